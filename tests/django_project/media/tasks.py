"""The media app's actors: ``transcode`` says ``uploaded/<id>`` when done; the
``@on_done`` rule sends ``thumbnail`` for it. Each run counts itself in ``media/runs``."""

import dramatiq

from resc_dramatiq import on_done

RUNS = "media/runs"


def count(name: str, video_id: str | int) -> None:
    dramatiq.get_broker().client.hincrby(RUNS, f"{name}/{video_id}", 1)


@dramatiq.actor(queue_name="media", done_event="uploaded/${video_id}")
def transcode(video_id: int) -> None:
    count("transcode", video_id)


@on_done(r"^uploaded/(?P<video_id>\d+)$")
@dramatiq.actor(queue_name="thumbs")
def thumbnail(video_id: str) -> None:
    count("thumbnail", video_id)
