"""Money requests: a user asks the owner of an email for an amount, which the payer pays as a
transfer, declines, or which the requester cancels or which expires."""
