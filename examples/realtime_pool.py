"""Lease a connection of the Realtime pool and ask the model a question.

The pool (:class:`neuro_api.realtime.RealtimePool`) runs in your nursery;
each ``async with pool.connection_context()`` gives you a connection of your
own until the block ends. Here the question is asked out of band
(``conversation: "none"``), so nothing is left in the connection's
conversation for the next user. ::

    OPENAI_API_KEY=sk-... python examples/realtime_pool.py "Say hi to chat"

``OPENAI_REALTIME_URL`` and ``OPENAI_REALTIME_MODEL`` are read as the
server reads them.
"""

from __future__ import annotations

import os
import sys

import trio

from neuro_api.realtime import DEFAULT_MODEL, DEFAULT_URL, PoolConfig, RealtimePool


async def ask(pool: RealtimePool, question: str) -> str:
    """The model's text answer to ``question`` (raises on an ``error`` event)."""
    async with pool.connection_context() as conn:
        await conn.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "output_modalities": ["text"],
                    "instructions": "You are Neuro-sama. Answer in one sentence.",
                    "input": [
                        {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": question}],
                        }
                    ],
                },
            }
        )
        text = []
        while True:
            event = await conn.receive_ok()
            if event["type"] == "response.output_text.delta":
                text.append(event["delta"])
            elif event["type"] == "response.done":
                return "".join(text)


async def main(question: str) -> None:
    """Run a pool for one question; print the answer, and the leases to stderr."""
    config = PoolConfig(
        api_key=os.environ["OPENAI_API_KEY"],
        url=os.environ.get("OPENAI_REALTIME_URL", DEFAULT_URL),
        model=os.environ.get("OPENAI_REALTIME_MODEL", DEFAULT_MODEL),
    )
    pool = RealtimePool(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        with trio.fail_after(30):
            print(await ask(pool, question))
        print(pool.stats()["total_sessions_handled"], "lease(s)", file=sys.stderr)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    if "OPENAI_API_KEY" not in os.environ:
        sys.exit("set OPENAI_API_KEY")
    trio.run(main, " ".join(sys.argv[1:]) or "Say hi to chat")
