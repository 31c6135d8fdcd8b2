"""What the recorder keeps of command lines and reader settings, and the manifest's account of it
(``redaction``): the manifest travels with the trace, so secrets stay out of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from telemrec.errors import UsageError
from telemrec.redaction import CMDLINE_MODES, MASK, RULES, is_secret_name, redact_argv, redact_url


@dataclass(frozen=True)
class CommandLine:
    """The wrapped command as the manifest keeps it: ``argv`` is None when command lines are dropped."""

    argv: list[str] | None
    redacted: int
    rules: list[str]

    @classmethod
    def of(cls, argv: Sequence[str], mode: str) -> CommandLine:
        if mode == "dropped":
            return cls(None, 0, [])
        if mode == "unredacted":
            return cls(list(argv), 0, [])
        r = redact_argv(argv)
        return cls(r.argv, r.count, sorted(r.rules))

    def record(self, pid: int | None, exit_status: int | None) -> dict:
        """The manifest's ``command``."""
        out: dict[str, Any] = {} if self.argv is None else {"argv": list(self.argv)}
        return {**out, "pid": pid, "exit_status": exit_status}


def psutil_cmdline_option(options: dict[str, str], mode: str) -> None:
    """Hand the recording's command-line mode to a psutil reader's options (``-O cmdline=...``)
    unless the reader's own option says otherwise; one that would record command lines under
    ``--no-cmdline`` is refused."""
    from telemrec.readers.psutil_ import parse_cmdline_option

    given = options.get("cmdline")
    if given is None:
        if mode != "redacted":
            options["cmdline"] = {"dropped": "false", "unredacted": "unredacted"}[mode]
        return
    if mode == "dropped" and parse_cmdline_option(given) != "dropped":
        raise UsageError(f"--no-cmdline and -O cmdline={given} contradict each other",
                         "Drop one: --no-cmdline records no command line anywhere in the trace.")


def redact_reader_info(info: dict) -> int:
    """Mask URL passwords in a reader's source and options, and options named like secrets, in
    place (the manifest's ``readers`` entry); how many values were masked."""
    count = 0
    source = info.get("source")
    if isinstance(source, str):
        info["source"] = redact_url(source)
        count += info["source"] != source
    options = info.get("options") or {}
    for key, value in list(options.items()):
        if is_secret_name(str(key)) and value not in (None, ""):
            options[key] = MASK
        elif isinstance(value, str):
            options[key] = redact_url(value)
        else:
            continue
        count += options[key] != value
    return count


def redaction_record(command: CommandLine | None, mode: str, readers: Sequence[Mapping], reader_values: int) -> dict:
    """The manifest's ``redaction``: what was done to command lines and reader settings."""
    process = {r["label"]: r["identity"]["cmdline"] for r in readers
               if isinstance(r.get("identity"), Mapping) and r["identity"].get("cmdline") in CMDLINE_MODES}
    in_force = mode == "redacted" or "redacted" in process.values()
    return {
        "command_lines": mode,
        "rules": list(RULES) if in_force else [],
        "marker": MASK,
        "argv_values_redacted": command.redacted if command else 0,
        "argv_rules_matched": command.rules if command else [],
        "process_cmdline": process,
        "reader_values_redacted": reader_values,
    }
