"""The stand-ins the tests start answer through the production client libraries."""

from __future__ import annotations

import boto3
import stripe

from stack.bootstrap import AwsResources


def test_localstripe_confirms_a_payment_intent_through_stripe_python(localstripe_url: str) -> None:
    client = stripe.StripeClient("sk_test_fixture", base_addresses={"api": localstripe_url})
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1250,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert intent.status == "succeeded"
    assert intent.amount == 1250
    fetched = client.v1.payment_intents.retrieve(intent.id)
    assert fetched.id == intent.id


def test_moto_holds_the_bootstrapped_ses_sender_and_sns_topic(aws: AwsResources) -> None:
    ses = boto3.client("ses", region_name=aws.region, endpoint_url=aws.endpoint_url)
    sns = boto3.client("sns", region_name=aws.region, endpoint_url=aws.endpoint_url)
    assert aws.ses_sender in ses.list_identities()["Identities"]
    topics = [topic["TopicArn"] for topic in sns.list_topics()["Topics"]]
    assert aws.sns_topic_arn in topics
    assert aws.sns_topic_arn.endswith(":micropay-sns")


def test_moto_holds_the_bootstrapped_kms_key_of_webhook_secrets(aws: AwsResources) -> None:
    kms = boto3.client("kms", region_name=aws.region, endpoint_url=aws.endpoint_url)
    assert aws.webhook_secrets_kms_key_id == "alias/micropay-webhook-secrets"
    key = kms.describe_key(KeyId=aws.webhook_secrets_kms_key_id)["KeyMetadata"]
    assert (key["KeyUsage"], key["KeySpec"], key["Enabled"]) == (
        "ENCRYPT_DECRYPT",
        "SYMMETRIC_DEFAULT",
        True,
    )
    aliases = kms.list_aliases(KeyId=key["KeyId"])["Aliases"]
    assert [a["AliasName"] for a in aliases] == [aws.webhook_secrets_kms_key_id]
