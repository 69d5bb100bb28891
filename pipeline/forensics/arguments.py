"""The flags of `pipeline replay` (and its `--what-if`), apart from the commands themselves so that building the
CLI's parser imports no Kafka client."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `pipeline replay`."""
    p.add_argument("--incident", metavar="ID", help="the incident's timeline (every topic, causal order)")
    p.add_argument("--from", dest="start", metavar="T", help="RFC 3339 time or a duration ago (15m, 6h, 2d)")
    p.add_argument("--to", dest="end", metavar="T", help="end of the window, exclusive (default: the log's end)")
    p.add_argument("--topic", metavar="T", help="one topic (logical name, e.g. decisions), in log order")
    p.add_argument("--partition", type=int, metavar="P", help="with --topic: only this partition")
    p.add_argument("--from-offset", type=int, metavar="A", help="with --topic: the first offset")
    p.add_argument("--to-offset", type=int, metavar="B", help="with --topic: the offset to stop before (exclusive)")
    p.add_argument("--topics", metavar="A,B", help="only these topics (default: every topic of the timeline: signals, "
                   "incidents, features, scores, remediation, decisions, workflows, control)")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    what_if = p.add_argument_group("what-if (pipeline/forensics/whatif.py)")
    what_if.add_argument("--what-if", action="store_true",
                         help="decide the window's proposals again (--from T1 [--to T2]) and print exactly the "
                              "decisions that would differ, and why")
    what_if.add_argument("--rules", metavar="FILE", help="what-if: propose again with this rules file")
    what_if.add_argument("--confidence-threshold", type=float, metavar="X",
                         help="what-if: the AI confidence threshold to decide with (default CONFIDENCE_THRESHOLD)")
    colour = p.add_mutually_exclusive_group()
    colour.add_argument("--color", dest="color", action="store_true", default=None, help="colour even when piped")
    colour.add_argument("--no-color", dest="color", action="store_false", help="never colour")
