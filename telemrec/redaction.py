"""Secrets out of command lines: what the recorder stores of ``-- COMMAND`` (the manifest's
``command.argv``) and what the psutil reader stores of every process (``cmdline``).

Traces get shared (attached to tickets, copied to CI, published with papers); a command line
often carries credentials. ``redact_argv`` replaces the values that look secret with ``MASK``
and counts them. It errs towards redacting: a value that is not a secret but sits where one
would (``--sort-key name``) is masked too; ``--no-redact`` / ``-O cmdline=unredacted`` keep
command lines as they are. The rules, by the names the manifest's ``redaction.rules`` lists:

- ``secret-options``: the value of an option whose name ends in a secret word, as
  ``--NAME VALUE``, ``--NAME=VALUE``, ``-NAME VALUE`` (Go style); secret words: see
  ``SECRET_WORDS``. The name is split into words at ``-``, ``_``, ``.`` and camelCase; the
  last word counts (``--db-password``, ``--api_key``, ``--hfToken``), or a long secret
  word ending a run-together name (``--apitoken``, ``--dbpassword``). ``--password-file PATH``,
  ``--max-tokens 5`` and ``--tokenizer gpt2`` are left alone. A separate value that looks
  like another option (``--use-auth-token --model x``) is not taken for a value.
- ``secret-assignments``: ``NAME=VALUE`` arguments with such a name: environment
  assignments (``env HF_TOKEN=x cmd``, ``PASSWORD=x``) and key=value overrides
  (Hydra's ``db.password=x``, ``+trainer.api_key=x``).
- ``url-credentials``: the password of ``scheme://user:password@host`` anywhere in an
  argument, and secret-named query parameters (``?access_token=x``).
- ``authorization-headers``: ``Authorization: ...``, ``Proxy-Authorization: ...``,
  ``Cookie: ...`` and secret-named headers (``X-Api-Key: ...``), as curl's ``-H`` passes them.
- ``program-options``: single-letter options that are passwords for a few programs
  (``mysql -pX``, ``sshpass -p X``, ``redis-cli -a X``, ``curl -u user:X``): elsewhere
  ``-p`` is a port or a count, so single letters are left alone unless the program is known.

An argument with whitespace in it (``bash -c "python app.py --password x"``) is redacted
word by word with the same rules, shell quotes kept together.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["CMDLINE_MODES", "MASK", "RULES", "SECRET_WORDS", "Redacted", "is_secret_name", "redact_argv",
           "redact_url"]

MASK = "***"
CMDLINE_MODES = ("redacted", "dropped", "unredacted")
"""What a recording keeps of command lines: secrets masked (the default), none, or as given."""
RULES = ("secret-options", "secret-assignments", "url-credentials", "authorization-headers", "program-options")
SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "pwd", "pass", "pw", "token", "secret", "key",
                          "apikey", "credential", "credentials", "auth", "authorization"})
# words that also count at the end of a run-together name: --apitoken, --dbpassword, --clientsecret
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "token", "secret", "apikey", "credential", "credentials")
# --no-auth, --disable-token: switches, not values
_FLAG_PREFIXES = frozenset({"no", "disable", "without", "skip"})
_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# program -> (its options whose values are passwords, which take the value attached only: mysql's -p
# alone prompts); "-u" of curl is user:password, of which only the password goes
_PROGRAMS: dict[str, tuple[frozenset[str], bool]] = {
    **{name: (frozenset({"-p"}), True) for name in ("mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow",
                                                     "mysqlcheck", "mariadb", "mariadb-dump", "mariadb-admin")},
    "sshpass": (frozenset({"-p"}), False),
    "redis-cli": (frozenset({"-a"}), False),
    "curl": (frozenset({"-u", "-U", "--user", "--proxy-user"}), False),
}
_USERPASS_OPTIONS = frozenset({"-u", "-U", "--user", "--proxy-user"})

# a part of every name, header, program or URL that a rule can match (lower case): without one,
# nothing in a command line is masked
_TRIGGERS = ("pass", "pw", "tok", "secret", "key", "cred", "auth", "cookie", "://", "mysql", "mariadb", "redis",
             "curl")
_SPACE = re.compile(r"\s")
_MAX_DEPTH = 3  # bash -c "su -c 'cmd --password x'": command lines inside command lines, this deep
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_OPTION = re.compile(r"^(--?)([A-Za-z][\w.-]*)(=(.*))?$", re.S)
_ASSIGNMENT = re.compile(r"^([+~]{0,2}[A-Za-z_][\w.-]*)=(.*)$", re.S)
_LOOKS_LIKE_OPTION = re.compile(r"^--?[A-Za-z][\w.-]*(=.*)?$", re.S)
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@?#]*):([^/\s@?#]*)@")
_URL_QUERY = re.compile(r"([?&;])([\w.-]+)=([^&#;\s]*)")
_HEADER = re.compile(r"^(\s*)([A-Za-z][\w-]*)(\s*:\s*)(\S.*)$", re.S)
_SHELL_WORD = re.compile(r"""(?:[^\s'"]+|'[^']*'?|"(?:\\.|[^"\\])*"?)+""")


def is_secret_name(name: str) -> bool:
    """Whether an option, variable or header named ``name`` holds a secret (its last word is one)."""
    words = _WORDS.findall(name)
    if not words or (len(words) > 1 and words[0].lower() in _FLAG_PREFIXES):
        return False
    last = words[-1].lower()
    return last in SECRET_WORDS or last.endswith(_SECRET_ENDINGS)


@dataclass(frozen=True)
class Redacted:
    argv: list[str]
    count: int          # values replaced by MASK
    rules: frozenset[str]  # the rules that replaced them


def redact_argv(argv: Sequence[str]) -> Redacted:
    """``argv`` with the values of secrets replaced by ``MASK`` (see the module's rules)."""
    text = "\0".join(argv).lower()
    if not any(t in text for t in _TRIGGERS):  # most command lines: nothing any rule could match
        return Redacted(list(argv), 0, frozenset())
    out = _Redactor()
    return Redacted(out.words(list(argv)), out.count, frozenset(out.rules))


def redact_url(url: str) -> str:
    """``url`` without the password of its user info (``user:***@host``) or secret query values."""
    return _Redactor().urls(url)


class _Redactor:
    def __init__(self) -> None:
        self.count = 0
        self.rules: set[str] = set()

    def _hit(self, rule: str) -> None:
        self.count += 1
        self.rules.add(rule)

    def words(self, argv: list[str], depth: int = 0) -> list[str]:
        out: list[str] = []
        program: tuple[frozenset[str], bool] | None = None
        pending: str | None = None  # the rule whose value the next word is
        for arg in argv:
            if pending is not None:
                rule, pending = pending, None
                if arg and not _LOOKS_LIKE_OPTION.match(arg):
                    out.append(self._mask_value(rule, arg))
                    continue
            known = _PROGRAMS.get(os.path.basename(arg))
            if known is not None:
                program = known
                out.append(arg)
                continue
            if program is not None and arg[:1] == "-":
                options, attached_only = program
                flag = next((o for o in options if arg == o or arg.startswith(o + "=" if len(o) > 2 else o)), None)
                if flag is not None:
                    if arg == flag:
                        if not attached_only:
                            pending = "program-options:" + flag
                        out.append(arg)
                    else:
                        sep = "=" if arg[len(flag):len(flag) + 1] == "=" and len(flag) > 2 else ""
                        out.append(flag + sep + self._mask_value("program-options:" + flag,
                                                                 arg[len(flag) + len(sep):]))
                    continue
            redacted, pending = self._word(arg, depth)
            out.append(redacted)
        return out

    def _mask_value(self, rule: str, value: str) -> str:
        rule, _, flag = rule.partition(":")
        if flag in _USERPASS_OPTIONS:  # curl -u user:password: the user stays
            user, colon, password = value.partition(":")
            if not colon or not password:
                return value
            self._hit(rule)
            return f"{user}:{MASK}"
        self._hit(rule)
        return MASK

    def _word(self, arg: str, depth: int) -> tuple[str, str | None]:
        """One argument redacted; and the rule that makes the next argument a secret value, if any."""
        m = _OPTION.match(arg)
        if m is not None:
            dashes, name, eq, value = m.groups()
            if (dashes == "--" or len(name) > 1) and is_secret_name(name):
                if eq is None:
                    return arg, "secret-options"
                if value:
                    self._hit("secret-options")
                    return f"{dashes}{name}={MASK}", None
                return arg, None
        m = _ASSIGNMENT.match(arg)
        if m is not None and m.group(2) and is_secret_name(m.group(1)):
            self._hit("secret-assignments")
            return f"{m.group(1)}={MASK}", None
        m = _HEADER.match(arg)
        if m is not None and "//" not in m.group(4)[:2]:
            lead, name, sep, _value = m.groups()
            # a header as curl -H gives it: "X-Api-Key: k"; a bare key:value is no header
            if name.lower() in _HEADERS or (is_secret_name(name) and ("-" in name or sep.strip() != sep)):
                self._hit("authorization-headers")
                return f"{lead}{name}{sep}{MASK}", None
        if depth < _MAX_DEPTH and _SPACE.search(arg):
            return self._text(arg, depth + 1), None
        return self.urls(arg), None

    def urls(self, arg: str) -> str:
        """The passwords of URLs' user info and secret query values in ``arg`` masked."""
        if "://" not in arg and "?" not in arg:
            return arg

        def userinfo(m: re.Match) -> str:
            if not m.group(2):  # an empty password is no secret
                return m.group(0)
            self._hit("url-credentials")
            return f"{m.group(1)}:{MASK}@"

        def query(m: re.Match) -> str:
            if not m.group(3) or not is_secret_name(m.group(2)):
                return m.group(0)
            self._hit("url-credentials")
            return f"{m.group(1)}{m.group(2)}={MASK}"

        arg = _URL_USERINFO.sub(userinfo, arg) if "://" in arg else arg
        return _URL_QUERY.sub(query, arg) if "?" in arg else arg

    def _text(self, text: str, depth: int) -> str:
        """A shell command line in one argument: its words redacted in place, separators kept."""
        spans = [(m.start(), m.end()) for m in _SHELL_WORD.finditer(text)]
        words = [_unquote(text[a:b]) for a, b in spans]
        redacted = self.words([w for w, _ in words], depth)
        out, last = [], 0
        for (a, b), (word, quote), new in zip(spans, words, redacted):
            out.append(text[last:a])
            out.append(text[a:b] if new == word else _requote(text[a:b], new, quote))
            last = b
        out.append(text[last:])
        return "".join(out)


def _unquote(word: str) -> tuple[str, str]:
    """A shell word without its quotes where it is one quoted string (and the quote), else as it is."""
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1], word[0]
    return word, ""


def _requote(original: str, new: str, quote: str) -> str:
    if quote:
        return quote + new + quote
    # --password='a b': the mask replaced the quoted part too
    return new
