"""A real SMTP server (aiosmtpd) for the magic-link tests.

Usage: python smtp_sink.py PORT. Prints `ready` once listening, then one JSON line per received
mail: {"to": [...], "subject": ..., "body": ...} with the body decoded from its transfer encoding.
"""

import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        print(
            json.dumps(
                {
                    "to": list(envelope.rcpt_tos),
                    "from": envelope.mail_from,
                    "subject": str(message["subject"]),
                    "body": body.get_content() if body is not None else "",
                }
            ),
            flush=True,
        )
        return "250 Message accepted for delivery"


async def main(port):
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
