"""Tell the processes that hold an account's connections what changed.

Published on Redis after commit; the IDLE supervisor of whichever process owns the
account reacts (drop the connection on delete, reconnect on new credentials).
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

import redis.asyncio as aioredis

ACCOUNT_CONTROL_CHANNEL = "mailsvc:account-control"
ControlAction = Literal["stop", "reconnect"]


async def publish_account_control(
    redis: aioredis.Redis, *, tenant_id: str, account_id: uuid.UUID, action: ControlAction
) -> None:
    message = {"tenant_id": tenant_id, "account_id": str(account_id), "action": action}
    await redis.publish(ACCOUNT_CONTROL_CHANNEL, json.dumps(message))
