"""Frame-cache commands: prefetch, push-frames."""

from __future__ import annotations

from .. import Storage
from ._base import EXIT_OK, CliError, Context
from ._progress import Bar, summary


async def cmd_prefetch(ctx: Context, s: Storage) -> int:
    """Fetch a timeline's frame cache into DEST (unchanged frames are skipped)."""
    a = ctx.args
    with Bar(ctx, f"prefetch {a.timeline_id}") as bar:
        report = await s.prefetch_frames(a.timeline_id, a.dest, bucket=a.bucket, on_progress=bar)
    ctx.say(f"prefetched frames of timeline {a.timeline_id} into {a.dest}: {summary(report)}")
    return EXIT_OK


async def cmd_push_frames(ctx: Context, s: Storage) -> int:
    """Upload every file under SRC_DIR as the timeline's frame cache."""
    a = ctx.args
    with Bar(ctx, f"push-frames {a.timeline_id}") as bar:
        report = await s.upload_frames(
            a.timeline_id,
            a.src_dir,
            bucket=a.bucket,
            skip_existing=a.skip_existing,
            on_progress=bar,
        )
    if not (report.done or report.skipped):
        raise CliError(f"push-frames {a.timeline_id}: no files under {a.src_dir}")
    bucket = a.bucket or s.settings.bucket_out
    ctx.say(f"pushed {a.src_dir} -> s3://{bucket}/frames/{a.timeline_id}/: {summary(report)}")
    return EXIT_OK
