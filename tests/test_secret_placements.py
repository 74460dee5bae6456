"""Secrets never copied: wherever a credential sits in a recipe, its profile or a --set value,
the command exits 2 naming file, line and key, the error never echoes the secret, and no
file the failed command leaves behind holds it."""

from __future__ import annotations

import pytest
from project import recipe_text, write_recipe

from cl_toolkit.core.secret_scan import redact, url_problem, value_problem

TOKEN = "hf_" + "Qx7" * 12  # looks like a Hugging Face token
PASSWORD = "Pa55w0rdZebra"


def assert_refused(clt, proj, args, secret, where):
    """Exit 2 with `where` (file:line and/or [key]) in stderr; the secret nowhere but in the
    files the test itself wrote."""
    sources = {p for p in proj.rglob("*") if p.is_file() and secret in p.read_text(errors="replace")}
    out = proj / "out"
    code, stdout, stderr = clt(*args, "-o", out) if args[1] == "render" else clt(*args)
    assert code == 2, stderr
    for needle in where:
        assert needle in stderr, stderr
    assert secret not in stdout + stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    for path in proj.rglob("*"):
        if path.is_file() and path not in sources:
            assert secret not in path.read_text(errors="replace"), path
    for name in ("axolotl.yml", "recipe.yml", "manifest.json"):
        assert not list(proj.rglob(name)), name


def test_password_in_a_passthrough_tracking_uri(proj, clt):
    text = recipe_text(axolotl={"mlflow_tracking_uri": f"https://alice:{PASSWORD}@mlflow.example.org"})
    path = write_recipe(proj, text, "uri")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "mlflow_tracking_uri" in t)
    assert_refused(clt, proj, ("recipe", "render", path), PASSWORD,
                   [f"uri.yml:{line}:", "[axolotl.mlflow_tracking_uri]", "must not carry a password or user name"])


def test_token_in_the_description(proj, clt):
    text = recipe_text(description=f"trained with {TOKEN} from the lab")
    path = write_recipe(proj, text, "desc")
    assert_refused(clt, proj, ("recipe", "render", path), TOKEN, ["desc.yml:", "[description]", "token or key"])


def test_token_in_a_comment(proj, clt):
    text = recipe_text() + f"# remember: export HF_TOKEN={TOKEN}\n"
    path = write_recipe(proj, text, "comment")
    line = len(text.splitlines())
    assert_refused(clt, proj, ("recipe", "render", path), TOKEN, [f"comment.yml:{line}:", "token or key"])


def test_token_in_a_set_value(proj, clt):
    path = write_recipe(proj, recipe_text(), "setv")
    assert_refused(clt, proj, ("recipe", "render", path, "--set", f"axolotl.hub_model_id={TOKEN}"), TOKEN,
                   ["--set:", "[axolotl.hub_model_id]"])
    assert_refused(clt, proj, ("train", path, "--dry-run", "--set", f"description=see {TOKEN}"), TOKEN,
                   ["[description]"])


def test_a_set_value_that_is_not_yaml_is_not_echoed(proj, clt):
    path = write_recipe(proj, recipe_text(), "setbad")
    assert_refused(clt, proj, ("recipe", "validate", path, "--set", f"axolotl.hub_model_id=[{PASSWORD}"), PASSWORD,
                   ["[axolotl.hub_model_id] cannot read the value"])
    assert_refused(clt, proj, ("recipe", "validate", path, "--set", PASSWORD), PASSWORD, ["expected KEY=VALUE"])


def test_token_in_a_profile_value(proj, clt):
    profile = (proj / "configs" / "profiles" / "tiny-cpu.yml").read_text()
    profile = profile.replace("  adapter: lora\n", f"  adapter: lora\n  wandb_project: {TOKEN}\n")
    (proj / "configs" / "profiles" / "leaky.yml").write_text(profile)
    line = next(i for i, t in enumerate(profile.splitlines(), 1) if "wandb_project" in t)
    path = write_recipe(proj, recipe_text(profile="configs/profiles/leaky.yml"), "prof")
    assert_refused(clt, proj, ("recipe", "render", path), TOKEN,
                   [f"leaky.yml:{line}:", "[axolotl.wandb_project]"])
    assert_refused(clt, proj, ("cycle", path, "--dry-run"), TOKEN, [f"leaky.yml:{line}:"])


def test_a_comment_in_a_profile_is_scanned_too(proj, clt):
    profile = (proj / "configs" / "profiles" / "tiny-cpu.yml").read_text() + f"# key: {TOKEN}\n"
    (proj / "configs" / "profiles" / "leaky.yml").write_text(profile)
    path = write_recipe(proj, recipe_text(profile="configs/profiles/leaky.yml"), "profc")
    assert_refused(clt, proj, ("recipe", "validate", path), TOKEN, [f"leaky.yml:{len(profile.splitlines())}:"])


@pytest.mark.parametrize("query", ["token", "sig", "api_key", "X-Amz-Signature", "password"])
def test_secret_query_parameter_in_a_url(proj, clt, query):
    url = f"https://data.example.org/ds.jsonl?{query}={PASSWORD}&v=2"
    path = write_recipe(proj, recipe_text(axolotl={"test_datasets": [{"path": url, "type": "chat_template"}]}), "q")
    assert_refused(clt, proj, ("recipe", "render", path), PASSWORD,
                   ["[axolotl.test_datasets[0].path]", "query"])


def test_tracking_uri_with_a_password_is_refused_at_load(proj, clt):
    path = write_recipe(proj, recipe_text(tracking={"mlflow": {"tracking_uri": f"http://bob:{PASSWORD}@localhost:5000",
                                                               "experiment": "ff"}}), "trk")
    assert_refused(clt, proj, ("recipe", "validate", path), PASSWORD, ["[tracking.mlflow.tracking_uri]"])


def test_a_clean_recipe_with_urls_still_validates(proj, clt):
    path = write_recipe(proj, recipe_text(
        description="see https://example.org/docs?page=2#keys and ssh-free notes",
        tracking={"mlflow": {"tracking_uri": "http://localhost:5000", "experiment": "ff"}}), "clean")
    code, out, err = clt("recipe", "validate", path)
    assert code == 0, err


def test_url_rules():
    assert url_problem("https://u:p@h.example/x") and url_problem("see https://ghp@h.example")
    assert url_problem("s3://b/k?X-Amz-Credential=abc&X-Amz-Signature=def")
    assert url_problem("https://h/x?sv=1&sig=abc") and url_problem("https://h/x#access_token=abc")
    assert url_problem("https://h/x?monkey=1") is None and url_problem("https://h/x?token=") is None
    assert url_problem("https://h/x?page=2&keyword=a") is None
    assert value_problem("plain text, no url") is None


def test_redact_masks_urls_and_tokens():
    text = f"GET https://alice:{PASSWORD}@h/x?token={PASSWORD}&page=2 with {TOKEN}"
    masked = redact(text)
    assert PASSWORD not in masked and TOKEN not in masked
    assert "page=2" in masked and "https://[REDACTED]@h/x" in masked
