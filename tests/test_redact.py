"""The redactor: every planted form of secret goes, metrics stay, and it is idempotent and linear."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.redact import MASK, Redactor, redact_text
from monitor.textsafe import safe_text

WANDB_V1 = "wandb_v1_" + "Q7xLp2Rk9ZtB4mWc8NvD3hYs6GfJ1aKe" * 2
WANDB_OLD = "0123456789abcdef0123456789abcdef01234567"
PEM_BODY = "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8XzKqR2zqjBQhqc3o9Lg3QqF5"
PEM_TAIL = "Xv9Pq2Rs7Tu4Vw1Yz0Ab5Cd=="

# (text with a secret, the secret); each secret must be gone, the rest of the text kept.
FORMS = [
    (f"export WANDB_API_KEY={WANDB_V1}", WANDB_V1),
    (f"using key {WANDB_V1} for upload", WANDB_V1),
    (f"wandb login {WANDB_OLD}", WANDB_OLD),
    ("OPENAI key sk-proj-Abc123Def456Ghi789Jkl012Mno345 set", "sk-proj-Abc123Def456Ghi789Jkl012Mno345"),
    ("x sk-ant-api03-QwErTyUiOpAsDfGhJkLz-XcVbNm_1234 y", "sk-ant-api03-QwErTyUiOpAsDfGhJkLz-XcVbNm_1234"),
    ("hub hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345 ok", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("gh ghp_1234567890abcdefghijABCDEFGHIJklmnop", "ghp_1234567890abcdefghijABCDEFGHIJklmnop"),
    (
        "gh github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    ("gitlab glpat-xYz12345AbCdEfGhIjKl", "glpat-xYz12345AbCdEfGhIjKl"),
    ("slack xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF"),
    ("hook https://hooks.slack.com/services/T0ABC/B0DEF/zyXWvuTSRqpo", "T0ABC/B0DEF/zyXWvuTSRqpo"),
    ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"),
    ("curl -H 'Authorization: Basic YXBpOnNlY3JldA==' x", "YXBpOnNlY3JldA=="),
    ("token abcdEFGH12345678 sent", "abcdEFGH12345678"),
    ("clone https://alice:s3cret@host/x.git", "s3cret"),
    ("db postgres://bob:pa/ss@w@rd:9@db.internal:5432/x", "pa/ss@w@rd:9"),
    ("curl -u alice:Pa55word! https://api.example", "Pa55word!"),
    ("curl --user=alice:Pa55word2 https://api.example", "Pa55word2"),
    ("python train.py --lr --password hunter2pw --epochs 3", "hunter2pw"),
    ("python train.py --password=hunter3pw", "hunter3pw"),
    ("run --api-key k-12345678 --secret 's3 cr3t' --token=tok9876543", "k-12345678"),
    ("run --api-key k-12345678 --secret 's3 cr3t' --token=tok9876543", "s3 cr3t"),
    ("run --api-key k-12345678 --secret 's3 cr3t' --token=tok9876543", "tok9876543"),
    ("job --password 907153 --seed 1", "907153"),
    ("mysql -h db -u root -pMyS3cretPw training", "MyS3cretPw"),
    (f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n{PEM_TAIL}\n-----END RSA PRIVATE KEY-----", PEM_BODY),
    (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n{PEM_TAIL}\nstep 5 loss 2.3", PEM_TAIL),
    (f"key = '-----BEGIN PRIVATE KEY-----\\n{PEM_BODY}\\n{PEM_TAIL}'", PEM_TAIL),
    (PEM_BODY, PEM_BODY),  # a key's body line shown on its own (the log tail shows lines one by one)
    ('{"db_password": "correct horse"}', "correct horse"),
    ("client_secret: abcdef123", "abcdef123"),
    ("api_key:\u00a0svgsecret-12345 and token:\u00a0sk-abcdefghijklmnopqrstu", "svgsecret-12345"),
    ("fetch https://h/p?a=1&access_token=xyz123&b=2", "xyz123"),
]


@pytest.mark.parametrize(("text", "secret"), FORMS)
def test_every_form_of_secret_is_redacted(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out
    assert redact_text(out) == out


KEPT = [
    "iter 100: loss 2.345, lr 3e-4, grad_norm 1.2",
    "tokens_per_sec=12345 max_tokens: 512 pad_token: <pad>",
    "mkdir -p /scratch/run7 && python -u train.py -pthread",
    "saved /home/me/Projects/Model2/checkpoints/Epoch10/weights.pt",
    "sha256 3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed",
    "python train.py --password-file /run/secrets/db --max-tokens 100",
    "Error: token expired",
    "Loading token embeddings from the checkpoint, token position 12",
    "https://github.com/acme/model.git@main",
]


@pytest.mark.parametrize("text", KEPT)
def test_metrics_paths_and_prose_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_previous_flag_does_not_swallow_the_password_flag() -> None:
    assert redact_text("a.py --flag --password pw123456") == f"a.py --flag --password {MASK}"
    assert redact_text("a.py --password --token t0ken123") == f"a.py --password --token {MASK}"


def test_mysql_glued_password_only_on_a_mysql_line() -> None:
    assert redact_text("mysqldump -uroot -ptopsecret db") == f"mysqldump -uroot -p{MASK} db"
    assert redact_text("gcc -pthread -pipe x.c") == "gcc -pthread -pipe x.c"


def test_no_break_spaces_are_kept_but_matched_as_spaces() -> None:
    out = redact_text("password:\u00a0\u00a0hunter2pw\u00a0ok")
    assert out == f"password:\u00a0\u00a0{MASK}\u00a0ok"


def test_values_of_secret_named_environment_variables_go_anywhere() -> None:
    r = Redactor()
    r.remember_env({"MY_DB_PASSWORD": "plain-words-991", "HOME": "/home/me", "N_TOKENS": "5"})
    assert r.text("connect with plain-words-991 from /home/me") == f"connect with {MASK} from /home/me"


# ---- properties ---------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "password", "=", ":", " ", "\u00a0", "--token", "-p", "mysql", "https://", "u:", "@", "host", "/",
        "Bearer ", "Authorization: ", "sk-", "hf_", "AKIA", "wandb_v1_", "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----", "\n", "\\n", "?token=", "&", '"', "'", MASK, "[", "]", "aB3dE5", "0" * 8,
        "-u ", "curl ", "\x1b]0;", "\x07", "\u202e",
    ]
)  # fmt: skip
texts = st.one_of(st.text(max_size=80), st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=30).map("".join))


@settings(max_examples=500, deadline=None)
@given(texts)
def test_redactor_is_idempotent_and_adds_no_control_characters(text: str) -> None:
    red = Redactor(["remembered-secret"])
    once = red.text(text)
    assert red.text(once) == once
    added = {c for c in once if not c.isprintable()} - {c for c in text if not c.isprintable()}
    assert not added
    shown = safe_text(red.text(safe_text(text)))
    assert safe_text(shown) == shown


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | texts,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
        max_leaves=12,
    )
)
def test_redacting_structured_data_never_raises(obj: object) -> None:
    Redactor().data(obj)


@pytest.mark.parametrize(
    "piece",
    ["a", "a.", "a=", "--a ", "password=", "--password ", "a://b:", "https://u:p@", "-----BEGIN PRIVATE KEY-----\n",
     "mysql -p", "?token=", "Bearer ", "-u a:", "aB3dE5fG", "wandb_v1_", "\u00a0", '"k": "'],
)  # fmt: skip
def test_redactor_is_linear_on_long_lines(piece: str) -> None:
    def cost(n: int) -> float:
        text = (piece * (n // len(piece) + 1))[:n]
        best = math.inf
        for _ in range(3):  # the best of three: a busy machine slows a run, it never speeds one up
            t0 = time.perf_counter()
            Redactor(["remembered-secret"]).text(text)
            best = min(best, time.perf_counter() - t0)
        return best

    small, big = cost(20_000), cost(200_000)
    assert big < 3.0
    assert big < 10 * small * 4 + 0.05  # 10x the input: about 10x the time, never 100x
