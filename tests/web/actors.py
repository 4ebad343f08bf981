"""Running the actors' messages in the test process, in order, the way one worker would."""

from __future__ import annotations

import dramatiq

from experiments.jobs import actors


def capture_messages(monkeypatch) -> list[dramatiq.Message]:
    """Every message the actors and views send, in order, instead of the broker's queues.
    A delayed message keeps its delay in options["captured_delay"]."""
    messages: list[dramatiq.Message] = []

    def enqueue(message, *, delay=None):
        message.options["captured_delay"] = delay
        messages.append(message)
        return message

    monkeypatch.setattr(actors.advance_experiment.broker, "enqueue", enqueue)
    return messages


def drain(outbox, *, limit: int = 500, skip=("watch_experiment",)) -> list[str]:
    """Run queued messages until none is left (the watchdog's self-rescheduling is skipped)."""
    ran = []
    while outbox and len(ran) < limit:
        message = outbox.pop(0)
        if message.actor_name in skip:
            continue
        actors.advance_experiment.broker.get_actor(message.actor_name).fn(*message.args, **message.kwargs)
        ran.append(message.actor_name)
    return ran
