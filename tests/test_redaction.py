"""telemrec.redaction: which values of a command line are masked, and which are left alone."""

import pytest
from hypothesis import given, settings, strategies as st

from telemrec.redaction import MASK, RULES, _Redactor, is_secret_name, redact_argv, redact_url

MASKED = [
    # (argv, expected, count, rules)
    (["python3", "app.py", "--password", "hunter2"], ["python3", "app.py", "--password", MASK], 1, {"secret-options"}),
    (["app", "--password=hunter2", "--db-password", "x"], ["app", f"--password={MASK}", "--db-password", MASK], 2,
     {"secret-options"}),
    (["app", "--api_key", "k", "--apiKey", "k", "--hfToken", "t", "--clientsecret", "s", "--credentials", "c"],
     ["app", "--api_key", MASK, "--apiKey", MASK, "--hfToken", MASK, "--clientsecret", MASK, "--credentials", MASK],
     5, {"secret-options"}),
    (["app", "--passwd", "a", "--pwd", "b", "--passphrase", "c", "--auth", "d", "--aws-secret-access-key", "e"],
     ["app", "--passwd", MASK, "--pwd", MASK, "--passphrase", MASK, "--auth", MASK, "--aws-secret-access-key", MASK],
     5, {"secret-options"}),
    (["app", "-token", "t", "-password=p"], ["app", "-token", MASK, f"-password={MASK}"], 2, {"secret-options"}),
    (["app", "--password", "-x9!"], ["app", "--password", MASK], 1, {"secret-options"}),  # a password, not an option
    (["env", "HF_TOKEN=abc", "PASSWORD=x", "python", "t.py", "db.password=pw", "+trainer.api_key=k"],
     ["env", f"HF_TOKEN={MASK}", f"PASSWORD={MASK}", "python", "t.py", f"db.password={MASK}",
      f"+trainer.api_key={MASK}"], 4, {"secret-assignments"}),
    (["git", "clone", "https://user:tok@github.com/o/r.git"],
     ["git", "clone", f"https://user:{MASK}@github.com/o/r.git"], 1, {"url-credentials"}),
    (["app", "--db=postgres://me:pw@db:5432/x", "DATABASE_URL=mysql://u:p@h/d"],
     ["app", f"--db=postgres://me:{MASK}@db:5432/x", f"DATABASE_URL=mysql://u:{MASK}@h/d"], 2, {"url-credentials"}),
    (["curl", "https://h/x?access_token=zz&page=2"], ["curl", f"https://h/x?access_token={MASK}&page=2"], 1,
     {"url-credentials"}),
    (["curl", "-H", "Authorization: Bearer abc", "-H", "X-Api-Key: k", "-H", "Accept: text/plain"],
     ["curl", "-H", f"Authorization: {MASK}", "-H", f"X-Api-Key: {MASK}", "-H", "Accept: text/plain"], 2,
     {"authorization-headers"}),
    (["curl", "-u", "me:pw", "--user=u:p", "-uq:r", "-u", "justme", "http://x"],
     ["curl", "-u", f"me:{MASK}", f"--user=u:{MASK}", f"-uq:{MASK}", "-u", "justme", "http://x"], 3,
     {"program-options"}),
    (["mysql", "-u", "root", "-phunter2", "-p", "db"], ["mysql", "-u", "root", f"-p{MASK}", "-p", "db"], 1,
     {"program-options"}),
    (["sshpass", "-p", "hunter2", "ssh", "h"], ["sshpass", "-p", MASK, "ssh", "h"], 1, {"program-options"}),
    (["/usr/bin/redis-cli", "-a", "pw", "ping"], ["/usr/bin/redis-cli", "-a", MASK, "ping"], 1, {"program-options"}),
    (["bash", "-c", "python app.py --password 'a b' --token=x && curl -H 'X-Api-Key: k' https://a:b@h"],
     ["bash", "-c", f"python app.py --password '{MASK}' --token={MASK} && curl -H 'X-Api-Key: {MASK}' "
                    f"https://a:{MASK}@h"], 4, {"secret-options", "authorization-headers", "url-credentials"}),
    (["sh", "-c", "su -c \"app --secret s\" bob"], ["sh", "-c", f"su -c \"app --secret {MASK}\" bob"], 1,
     {"secret-options"}),
]

KEPT = [
    ["python", "train.py", "--max-tokens", "5", "--tokenizer", "gpt2", "--keyframe", "3", "--monkey", "x"],
    ["app", "--password-file", "/run/secrets/pw", "--token-type", "bearer", "--key-file", "k.pem"],
    ["app", "--use-auth-token", "--model", "x"],           # a switch: the next word is an option
    ["app", "--no-auth", "data.csv", "--disable-token", "run"],
    ["app", "-p", "8080", "-k", "3", "-a", "x"],            # single letters of unknown programs
    ["app", "--password", ""],                             # nothing to hide
    ["ssh", "me@host", "http://me@host/x", "http://host:8080/x", "postgres://me:@h/db"],
    ["app", "key:value", "x=1", "tokens=5"],
    ["python", "-c", "import os\nfd=int(os.environ['FD'])\ntry:\n    pass\nexcept OSError as e:\n    raise"],
]


@pytest.mark.parametrize("argv,expected,count,rules", MASKED,
                         ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None)
def test_secret_values_are_masked(argv, expected, count, rules):
    r = redact_argv(argv)
    assert r.argv == expected
    assert r.count == count
    assert r.rules == rules and rules <= set(RULES)


@pytest.mark.parametrize("argv", KEPT, ids=lambda v: " ".join(v)[:40])
def test_what_is_not_a_secret_is_kept(argv):
    r = redact_argv(argv)
    assert (r.argv, r.count, r.rules) == (argv, 0, frozenset())


def test_secret_names():
    for name in ("password", "PASSWORD", "db-password", "HF_TOKEN", "hfToken", "apikey", "x-api-key", "AUTH",
                 "client.secret", "aws_secret_access_key", "github.pat.token", "dbpassword"):
        assert is_secret_name(name), name
    for name in ("password-file", "tokens", "tokenizer", "keyframe", "no-auth", "author", "bypass", "", "--"):
        assert not is_secret_name(name), name


def test_urls():
    assert redact_url("http://u:p@localhost:9100/metrics") == f"http://u:{MASK}@localhost:9100/metrics"
    assert redact_url("http://localhost:9100/metrics") == "http://localhost:9100/metrics"
    assert redact_url("https://h/m?token=abc") == f"https://h/m?token={MASK}"


_words = st.sampled_from(["--password", "--token=", "-p", "mysql", "curl", "-u", "PASSWORD=", "https://a:b@h",
                          "Authorization: x", "'", '"', " ", "\n", "bash", "-c", "x", "=", ":", "@", "?", "&",
                          "--", "-", "Key", "pw", "://", "sshpass", "-a", "redis-cli", "Cookie:", "no-"])
_argv = st.lists(st.one_of(st.text(max_size=12), st.lists(_words, max_size=6).map("".join)), max_size=8)


@settings(max_examples=400, deadline=None)
@given(_argv)
def test_any_argv_gives_an_argv_of_the_same_length_and_redacting_twice_changes_nothing(argv):
    once = redact_argv(argv)
    assert len(once.argv) == len(argv) and once.count >= 0
    assert (once.count == 0) == (once.argv == argv)
    twice = redact_argv(once.argv)
    assert twice.argv == once.argv
    slow = _Redactor()  # without the quick test for words no rule could match: the same answer
    assert slow.words(list(argv)) == once.argv and slow.count == once.count


_secret = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters="'\"-"),
                  min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(_secret)
def test_a_secret_of_any_characters_is_masked_in_every_form(secret):
    assert redact_argv(["app", "--password", secret]).argv == ["app", "--password", MASK]
    assert redact_argv(["app", f"--password={secret}"]).argv == ["app", f"--password={MASK}"]
    assert redact_argv(["app", f"TOKEN={secret}"]).argv == ["app", f"TOKEN={MASK}"]
    assert redact_argv(["bash", "-c", f"app --secret {secret} run"]).argv == ["bash", "-c", f"app --secret {MASK} run"]
    if not set(secret) & set("@/?#:"):
        assert redact_argv([f"https://me:{secret}@host/x"]).argv == [f"https://me:{MASK}@host/x"]
