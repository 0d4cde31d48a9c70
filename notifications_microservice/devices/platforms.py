"""SNS platform applications, one per push platform, found or created on first use."""

from __future__ import annotations

import asyncio
from typing import Any

from notifications_microservice.models import DevicePlatform
from notifications_microservice.settings import NotificationsSettings

SNS_PLATFORMS = {
    DevicePlatform.APNS: "APNS",
    DevicePlatform.APNS_SANDBOX: "APNS_SANDBOX",
    DevicePlatform.FCM: "GCM",
}
APPLICATION_PREFIX = "micropay-"
# Only the local stand-in accepts an application without real credentials; in AWS set the
# SNS_<PLATFORM>_APPLICATION_ARN variables to applications made with your APNs/FCM keys.
PLACEHOLDER_CREDENTIALS = {"PlatformCredential": "local-stand-in"}


class PushPlatforms:
    """The platform application ARN of each push platform, cached for the process."""

    def __init__(self, sns: Any, settings: NotificationsSettings) -> None:
        self.sns = sns
        self._arns: dict[DevicePlatform, str] = {
            platform: arn
            for platform, arn in {
                DevicePlatform.APNS: settings.sns_apns_application_arn,
                DevicePlatform.APNS_SANDBOX: settings.sns_apns_sandbox_application_arn,
                DevicePlatform.FCM: settings.sns_fcm_application_arn,
            }.items()
            if arn
        }
        self._lock = asyncio.Lock()

    async def application_arn(self, platform: DevicePlatform) -> str:
        """The configured application, else the one named micropay-<platform> (made if missing)."""
        arn = self._arns.get(platform)
        if arn is not None:
            return arn
        async with self._lock:
            arn = self._arns.get(platform)
            if arn is None:
                arn = await asyncio.to_thread(self._find_or_create, platform)
                self._arns[platform] = arn
            return arn

    def _find_or_create(self, platform: DevicePlatform) -> str:
        name = APPLICATION_PREFIX + platform
        paginator = self.sns.get_paginator("list_platform_applications")
        for page in paginator.paginate():
            for application in page.get("PlatformApplications", []):
                arn = str(application["PlatformApplicationArn"])
                if arn.endswith(f":app/{SNS_PLATFORMS[platform]}/{name}"):
                    return arn
        created = self.sns.create_platform_application(
            Name=name, Platform=SNS_PLATFORMS[platform], Attributes=PLACEHOLDER_CREDENTIALS
        )
        return str(created["PlatformApplicationArn"])
