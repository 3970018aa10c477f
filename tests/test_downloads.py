"""pipeline.downloads: which files a model needs, and fetching them through huggingface_hub's
own download path from a local stand-in for the hub (tests/hub_server.py). Nothing here
reaches huggingface.co: HF_ENDPOINT points at the stand-in and any other host is refused."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import tiny_models  # before the fixture: it defaults HF_HUB_OFFLINE to 1 at import
from hub_server import HubServer

from contract import LoraSpec, ModelError
from pipeline import downloads
from pipeline.backends import hub as hub_module
from pipeline.downloads import (
    DownloadProgress,
    Wanted,
    download,
    files_for,
    progress_bar,
    wanted_for_preset,
)
from pipeline.presets import PRESETS

# --- realistic listings ---------------------------------------------------------------------

WAN_INDEX = json.loads(
    (Path(__file__).resolve().parents[1] / "pipeline/configs/wan-14b/model_index.json").read_text()
)
"""Wan-AI/Wan2.2-I2V-A14B-Diffusers: two experts, image_encoder/image_processor null."""


def _shards(folder: str, stem: str, count: int, ext: str = "safetensors", variant: str = "") -> list[str]:
    v = f".{variant}" if variant else ""
    return [f"{folder}/{stem}{v}-{i:05d}-of-{count:05d}.{ext}" for i in range(1, count + 1)]


WAN_NEEDED = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    *_shards("text_encoder", "model", 5),
    "text_encoder/model.safetensors.index.json",
    "tokenizer/special_tokens_map.json",
    "tokenizer/spiece.model",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "transformer/config.json",
    *_shards("transformer", "diffusion_pytorch_model", 12),
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "transformer_2/config.json",
    *_shards("transformer_2", "diffusion_pytorch_model", 12),
    "transformer_2/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
WAN_LISTING = sorted([
    *WAN_NEEDED,
    ".gitattributes",
    "README.md",
    "assets/comp_effic.png",
    "assets/logo.png",
    "examples/i2v_input.JPG",
    "Wan2.1_VAE.pth",  # the original-format checkpoints at the root
    "models_t5_umt5-xxl-enc-bf16.pth",
    "high_noise_model/diffusion_pytorch_model-00001-of-00006.safetensors",  # not a component
    "image_encoder/config.json",  # null in model_index.json
    "image_encoder/model.safetensors",
    "transformer/diffusion_pytorch_model.bin",  # a pickle duplicate
    "transformer/diffusion_flax_model.msgpack",
    "text_encoder/README.md",
])

SVD_INDEX = json.loads(
    (Path(__file__).resolve().parents[1] / "pipeline/configs/svd-xt/model_index.json").read_text()
)
SVD_LISTING = sorted([
    ".gitattributes",
    "LICENSE",
    "README.md",
    "output_tile.gif",
    "svd_xt.safetensors",
    "svd_xt_image_decoder.safetensors",
    "model_index.json",
    "feature_extractor/preprocessor_config.json",
    "image_encoder/config.json",
    "image_encoder/model.fp16.safetensors",
    "image_encoder/model.safetensors",
    "image_encoder/pytorch_model.bin",
    "image_encoder/pytorch_model.fp16.bin",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.bin",
    "unet/diffusion_pytorch_model.bf16.safetensors",
    "unet/model.onnx",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
])
SVD_NEEDED = [
    "model_index.json",
    "feature_extractor/preprocessor_config.json",
    "image_encoder/config.json",
    "image_encoder/model.fp16.safetensors",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]


def test_files_for_a_wan_repo_takes_the_sharded_components_and_nothing_else() -> None:
    chosen = files_for(Wanted("Wan-AI/Wan2.2-I2V-A14B-Diffusers"), WAN_LISTING, WAN_INDEX)
    assert sorted(chosen) == sorted(WAN_NEEDED)
    assert len(chosen) == len(set(chosen))


def test_files_for_an_svd_repo_takes_the_variant_and_falls_back_per_component() -> None:
    wanted = Wanted("stabilityai/stable-video-diffusion-img2vid-xt", variant="fp16")
    assert sorted(files_for(wanted, SVD_LISTING, SVD_INDEX)) == sorted(SVD_NEEDED)

    # vae without fp16 files: its plain safetensors; the others keep the variant.
    listing = [f for f in SVD_LISTING if f != "vae/diffusion_pytorch_model.fp16.safetensors"]
    chosen = set(files_for(wanted, listing, SVD_INDEX))
    assert "vae/diffusion_pytorch_model.safetensors" in chosen
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in chosen

    # No variant asked: the plain safetensors, never a .bin or another variant.
    plain = set(files_for(Wanted(wanted.repo_id), SVD_LISTING, SVD_INDEX))
    assert {f for f in plain if "/" in f and f.rsplit("/", 1)[1].startswith(("model", "diffusion"))} == {
        "image_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }

    # Only pickles in a folder: the .bin (the variant's when there is one).
    bins = [f for f in SVD_LISTING if not f.startswith("image_encoder/") or not f.endswith(".safetensors")]
    assert "image_encoder/pytorch_model.fp16.bin" in files_for(wanted, bins, SVD_INDEX)
    assert "image_encoder/pytorch_model.bin" in files_for(Wanted(wanted.repo_id), bins, SVD_INDEX)


def test_files_for_sharded_variants_and_skipped_weights() -> None:
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLWan"], "scheduler": ["diffusers", "UniPC"]}
    listing = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "transformer/config.json",
        *_shards("transformer", "diffusion_pytorch_model", 3),
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        *[f"transformer/diffusion_pytorch_model.fp16-{i:05d}-of-00002.safetensors" for i in (1, 2)],
        "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    fp16 = files_for(Wanted("a/b", variant="fp16"), listing, index)
    assert [f for f in fp16 if f.startswith("transformer/")] == [
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    # A single-file checkpoint or GGUF brings the transformer and vae: their configs only.
    skipped = files_for(Wanted("a/b", skip_weights_of=frozenset({"transformer", "vae"})), listing, index)
    assert sorted(skipped) == [
        "model_index.json", "scheduler/scheduler_config.json", "transformer/config.json",
        "vae/config.json",
    ]
    # _ignore_files in model_index.json are left out, as diffusers does.
    ignored = files_for(Wanted("a/b"), listing, {**index, "_ignore_files": ["vae/config.json"]})
    assert "vae/config.json" not in ignored


def test_files_for_exact_files_and_lora_repos() -> None:
    listing = ["README.md", "a/high.safetensors", "a/low.safetensors", "b.gguf"]
    assert files_for(Wanted("x/y", files=("b.gguf", "a/low.safetensors")), listing) == [
        "b.gguf", "a/low.safetensors",
    ]
    with pytest.raises(ModelError, match=r"'nope.gguf' of 'x/y': the repo has no such file"):
        files_for(Wanted("x/y", files=("nope.gguf",)), listing)
    # A repo without model_index.json and no file named: its only .safetensors (a LoRA).
    assert files_for(Wanted("x/y"), ["README.md", "lora.safetensors"]) == ["lora.safetensors"]
    with pytest.raises(ModelError, match="holds 2 .safetensors files; name the file"):
        files_for(Wanted("x/y"), listing)


def test_files_for_picks_the_weights_diffusers_picks() -> None:
    """The same weight files as diffusers' own selection (DiffusionPipeline.download)."""
    from diffusers.pipelines.pipeline_loading_utils import (
        _get_ignore_patterns,
        filter_model_files,
        variant_compatible_siblings,
    )

    cases = [(WAN_LISTING, WAN_INDEX, None), (SVD_LISTING, SVD_INDEX, "fp16"), (SVD_LISTING, SVD_INDEX, None)]
    for listing, index, variant in cases:
        components = {k for k, v in index.items() if isinstance(v, list) and all(v)}
        folders = {os.path.split(f)[0] for f in filter_model_files(listing)} & components
        ignore = _get_ignore_patterns([], folders, listing, True, True, None, False, False, variant)
        theirs, _ = variant_compatible_siblings(listing, variant=variant, ignore_patterns=ignore)
        theirs = {f for f in theirs if f.split("/")[0] in components}
        ours = set(files_for(Wanted("r/x", variant=variant), listing, index))
        assert {f for f in ours if f.endswith((".safetensors", ".bin")) or ".index." in f} == theirs


def test_wanted_for_preset() -> None:
    import dataclasses

    base = next(iter(PRESETS.values()))
    plain = dataclasses.replace(base, repo_id="org/svd", variant="fp16", single_file=None, loras=())
    assert wanted_for_preset(plain) == [Wanted("org/svd", variant="fp16")]

    single = dataclasses.replace(
        base, repo_id="org/ltx-base", variant=None, loras=(),
        single_file=("org/ltx", "ltxv-2b-distilled.safetensors"),
    )
    assert wanted_for_preset(single) == [
        Wanted("org/ltx-base", skip_weights_of=frozenset({"transformer", "vae"})),
        Wanted("org/ltx", files=("ltxv-2b-distilled.safetensors",)),
    ]

    loras = (
        LoraSpec("org/lightning", "x/high_noise_model.safetensors"),
        LoraSpec("org/lightning", "x/low_noise_model.safetensors", component="transformer_2"),
        LoraSpec("./loras/mine.safetensors"),  # a local file: nothing to download
        LoraSpec("org/one-lora"),  # no file named: the repo's only .safetensors
    )
    fast = dataclasses.replace(base, repo_id="org/wan", variant=None, single_file=None, loras=loras)
    gguf = {"transformer": ("org/gguf", "high-Q4.gguf"), "transformer_2": ("org/gguf", "low-Q4.gguf")}
    assert wanted_for_preset(fast, gguf=gguf) == [
        Wanted("org/wan", skip_weights_of=frozenset({"transformer", "transformer_2"})),
        Wanted("org/one-lora"),
        Wanted("org/lightning", files=("x/high_noise_model.safetensors", "x/low_noise_model.safetensors")),
        Wanted("org/gguf", files=("high-Q4.gguf", "low-Q4.gguf")),
    ]

    # The real presets: every download Preset.downloads() names is covered.
    for preset in PRESETS.values():
        wanted = wanted_for_preset(preset)
        covered = {(w.repo_id, None) for w in wanted if w.files is None}
        covered |= {(w.repo_id, f) for w in wanted for f in w.files or ()}
        assert set(preset.downloads()) <= covered, preset.name


# --- against the stand-in hub ---------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """A running stand-in hub, huggingface_hub pointed at it, the cache in tmp_path/hub."""
    from huggingface_hub import constants, file_download
    from huggingface_hub.utils import _detect_agent

    outside: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in ("127.0.0.1", "localhost"):
            outside.append(str(host))
            raise socket.gaierror(f"tests do not leave this machine ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    # huggingface_hub read HF_ENDPOINT at import. downloads passes the endpoint to every call,
    # but other code (the agent-harness registry behind the user agent) uses the constant.
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE",
        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    # hub_reachable remembers each host:port; ports are reused from test to test.
    monkeypatch.setattr(hub_module, "_reachable", {})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "home" / "token"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # http_get waits a second before resuming a cut body; the tests need not.
    monkeypatch.setattr(file_download, "time", SimpleNamespace(sleep=lambda seconds: None))
    try:
        yield server
    finally:
        server.stop()
    assert not outside, f"requests left the machine: {outside}"


def _diffusers_repo() -> dict[str, bytes]:
    index = {
        "_class_name": "WanPipeline",
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
        "image_encoder": [None, None],
    }
    blob = lambda n, seed: bytes((seed + i * 7) % 251 for i in range(n))
    return {
        "model_index.json": json.dumps(index).encode(),
        "README.md": b"# a model\n",
        ".gitattributes": b"*.safetensors filter=lfs\n",
        "original.safetensors": blob(40_000, 1),
        "scheduler/scheduler_config.json": b'{"_class_name": "UniPCMultistepScheduler"}',
        "text_encoder/config.json": b'{"d_model": 4}',
        "text_encoder/model-00001-of-00002.safetensors": blob(30_000, 2),
        "text_encoder/model-00002-of-00002.safetensors": blob(20_000, 3),
        "text_encoder/model.safetensors.index.json": b'{"weight_map": {}}',
        "tokenizer/tokenizer.json": b'{"model": {}}',
        "tokenizer/tokenizer_config.json": b"{}",
        "transformer/config.json": b'{"num_layers": 1}',
        "transformer/diffusion_pytorch_model.safetensors": blob(60_000, 4),
        "transformer/diffusion_pytorch_model.bin": blob(60_000, 5),
        "vae/config.json": b'{"z_dim": 4}',
        "vae/diffusion_pytorch_model.safetensors": blob(25_000, 6),
        "image_encoder/model.safetensors": blob(10_000, 7),
    }


EXPECTED = {
    "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
    "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
    "text_encoder/model.safetensors.index.json", "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json", "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors", "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}


def _cache_dir() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def test_download_fetches_only_the_planned_files_once(hub: HubServer) -> None:
    files = _diffusers_repo()
    hub.add_repo("org/wan", files)
    hub.add_repo("org/loras", {"high.safetensors": b"h" * 5000, "low.safetensors": b"l" * 7000,
                               "other.safetensors": b"o" * 9000})
    reports: list[DownloadProgress] = []
    wanted = [Wanted("org/wan"), Wanted("org/loras", files=("high.safetensors", "low.safetensors"))]

    started = time.monotonic()
    paths = download(wanted, progress=reports.append)
    elapsed = time.monotonic() - started

    fetched = hub.fetched()
    assert sorted(f for r, f in fetched if r == "org/wan") == sorted(EXPECTED)
    assert sorted(f for r, f in fetched if r == "org/loras") == ["high.safetensors", "low.safetensors"]
    assert len(fetched) == len(set(fetched))  # nothing twice
    assert [r.path for r in hub.requests if r.kind == "api"] == ["/api/models/org/wan", "/api/models/org/loras"]
    assert all("blobs" in r.query for r in hub.requests if r.kind == "api")

    snapshot, high, low = paths
    assert snapshot.name == hub.repos["org/wan"].sha and snapshot.is_dir()
    for name in EXPECTED:
        assert (snapshot / name).read_bytes() == files[name]
    assert not (snapshot / "README.md").exists() and not (snapshot / "original.safetensors").exists()
    assert high.read_bytes() == b"h" * 5000 and low.name == "low.safetensors"

    # Progress: bytes still missing after model_index.json, throttled, ending at the total.
    total = sum(len(files[f]) for f in EXPECTED - {"model_index.json"}) + 12000
    assert reports and all(r.total_bytes == total for r in reports)
    assert [r.done_bytes for r in reports] == sorted(r.done_bytes for r in reports)
    assert reports[-1] == DownloadProgress("org/loras", total, total, None)
    assert len(reports) <= 2 + elapsed / downloads.PROGRESS_INTERVAL + 1

    # The loader finds everything through refs/main.
    from pipeline.backends.hub import cached_file, is_cached

    assert is_cached("org/wan")
    assert cached_file("org/loras", "low.safetensors") == str(low)

    hub.reset_log()
    reports.clear()
    assert download(wanted, progress=reports.append) == paths
    assert hub.fetched() == []
    assert [r.kind for r in hub.requests] == ["api", "api"]  # one listing per repo, no file
    assert reports == [DownloadProgress("org/loras", 0, 0, None)]


def test_an_interrupted_file_resumes_with_a_range_request(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http_get writes whole 10 MiB chunks; a body cut after the first resumes from there."""
    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL", 0.0)
    big = os.urandom(11 * 2**20)
    files = {**_diffusers_repo(), "transformer/diffusion_pytorch_model.safetensors": big}
    hub.add_repo("org/wan", files)
    hub.cut("org/wan", "transformer/diffusion_pytorch_model.safetensors", after=10_700_000)
    reports: list[DownloadProgress] = []

    (snapshot,) = download([Wanted("org/wan")], progress=reports.append)

    gets = hub.gets_of("org/wan", "transformer/diffusion_pytorch_model.safetensors")
    assert [(g.range, g.status) for g in gets] == [(None, 200), ("bytes=10485760-", 206)]
    assert not any(g.authorization for g in gets)  # the CDN gets no token
    assert (snapshot / "transformer/diffusion_pytorch_model.safetensors").read_bytes() == big
    # Bytes are counted inside the file (the first 10 MiB before the cut), never twice.
    total = reports[-1].total_bytes
    assert reports[-1].done_bytes == total
    assert total == sum(len(files[f]) for f in EXPECTED - {"model_index.json"})
    first = next(i for i, r in enumerate(reports) if r.file and r.file.startswith("transformer/diffusion"))
    before = reports[first - 1].done_bytes  # every file before it, finished
    inside = [r.done_bytes - before for r in reports if r.file == reports[first].file]
    assert inside[0] == 10 * 2**20 and inside[-1] == len(big)
    assert [r.done_bytes for r in reports] == sorted(r.done_bytes for r in reports)
    assert not list(_cache_dir().rglob("*.incomplete"))


def test_a_lost_connection_is_one_sentence_and_a_rerun_finishes(hub: HubServer) -> None:
    files = _diffusers_repo()
    hub.add_repo("org/wan", files)
    hub.drop("org/wan", "vae/diffusion_pytorch_model.safetensors", times=50)

    with pytest.raises(ModelError) as caught:
        download([Wanted("org/wan")])
    assert caught.value.message == (
        "The download of 'vae/diffusion_pytorch_model.safetensors' of 'org/wan' was interrupted; "
        "run the download again to resume (files already finished are kept)."
    )
    assert not list(_cache_dir().rglob("*.incomplete"))
    before = set(hub.fetched())

    hub.clear_faults()
    hub.reset_log()
    (snapshot,) = download([Wanted("org/wan")])
    assert not set(hub.fetched()) & before  # finished files were kept
    assert ("org/wan", "vae/diffusion_pytorch_model.safetensors") in hub.fetched()
    assert (snapshot / "vae/diffusion_pytorch_model.safetensors").read_bytes() == files[
        "vae/diffusion_pytorch_model.safetensors"
    ]


def test_a_gated_repo_needs_the_token_and_never_shows_it(
    hub: HubServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_SeCrEt0123456789abcdefTOKEN"
    hub.add_repo("org/gated", {"model.gguf": b"g" * 3000}, token=secret)
    caplog.set_level(logging.DEBUG)
    for name in ("huggingface_hub", "httpx2", "httpcore", "pipeline"):
        caplog.set_level(logging.DEBUG, logger=name)
    wanted = [Wanted("org/gated", files=("model.gguf",))]

    with pytest.raises(ModelError) as no_token:
        download(wanted)
    assert no_token.value.message == (
        "'org/gated' is gated: accept its licence on https://huggingface.co/org/gated and set "
        "HF_TOKEN to a token of that account, then run the download again."
    )
    assert not any(r.authorization for r in hub.requests)

    with pytest.raises(ModelError, match="is gated") as wrong:
        download(wanted, token="hf_wrong_token_value")
    assert "hf_wrong_token_value" not in wrong.value.message

    (path,) = download(wanted, token=secret)
    assert path.read_bytes() == b"g" * 3000
    assert any(r.authorization for r in hub.requests if r.kind == "resolve")

    # HF_TOKEN is read by huggingface_hub itself.
    monkeypatch.setenv("HF_TOKEN", secret)
    assert download(wanted) == [path]

    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert secret not in logged and "hf_wrong_token_value" not in logged
    assert secret not in no_token.value.message
    assert no_token.value.__cause__ is None and no_token.value.__suppress_context__


def test_unknown_repos_and_files(hub: HubServer) -> None:
    with pytest.raises(ModelError) as caught:
        download([Wanted("org/nothing-here")])
    assert caught.value.message == (
        "Cannot download 'org/nothing-here': the repo was not found on the Hugging Face hub; "
        "check its name (a private repo also needs HF_TOKEN set to a token that can read it)."
    )
    hub.add_repo("org/loras", {"a.safetensors": b"a"})
    with pytest.raises(ModelError, match=r"'b.safetensors' of 'org/loras': the repo has no such file"):
        download([Wanted("org/loras", files=("b.safetensors",))])
    assert hub.fetched() == []


def test_offline_makes_no_request(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/wan", _diffusers_repo())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as caught:
        download([Wanted("org/wan")])
    assert caught.value.message.startswith(
        "Cannot download 'org/wan': the Hugging Face hub is unreachable (HF_HUB_OFFLINE is set);"
    )
    assert hub.requests == []

    # Once downloaded, an offline call answers from the cache.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    (snapshot,) = download([Wanted("org/wan")])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_log()
    assert download([Wanted("org/wan")]) == [snapshot]
    assert hub.requests == []


def test_an_unreachable_hub(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        download([Wanted("org/wan")])
    assert time.monotonic() - started < 5
    assert caught.value.message == (
        f"Cannot download 'org/wan': the Hugging Face hub at {closed} is unreachable; check the "
        "network (or HF_ENDPOINT) and run the download again."
    )


def test_not_enough_disk_space(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _diffusers_repo()
    hub.add_repo("org/wan", files)
    need = sum(len(files[f]) for f in EXPECTED - {"model_index.json"})
    usage = SimpleNamespace(total=10**12, used=10**12, free=1000)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(ModelError) as caught:
        patch.setattr(downloads.shutil, "disk_usage", lambda path: usage)
        download([Wanted("org/wan")])
    assert caught.value.message == (
        f"Cannot download 'org/wan': not enough disk space in {_cache_dir()}: need {need / 1024:.0f} KiB, "
        "1 KiB free; free some space or set HF_HUB_CACHE to a bigger disk."
    )
    assert [f for _, f in hub.fetched()] == ["model_index.json"]  # planning only

    # The disk filling up during a download (another process) says the same.
    from huggingface_hub import file_download

    real = file_download._chmod_and_move

    def full(src, dst):  # type: ignore[no-untyped-def]
        if Path(src).stat().st_size > 10_000:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(file_download, "_chmod_and_move", full)
    with pytest.raises(ModelError, match=r"not enough disk space in .*: need \d+ KiB; free some"):
        download([Wanted("org/wan")])


def test_the_progress_bar_reports_on_a_stream(tmp_path: Path) -> None:
    out = (tmp_path / "bar.txt").open("w")
    with progress_bar(out) as report:
        report(DownloadProgress("a/b", 0, 2_000_000, "transformer/x.safetensors"))
        report(DownloadProgress("a/b", 2_000_000, 2_000_000, None))
    out.close()
    text = (tmp_path / "bar.txt").read_text()
    assert "100%" in text and "1.91M/1.91M" in text


def test_a_downloaded_tiny_pipeline_loads_offline(
    hub: HubServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The chosen files are enough for DiffusionPipeline.from_pretrained."""
    model_dir = tiny_models.tiny_model_dir("ltx", tmp_path_factory)
    files = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    junk = {
        "README.md": b"# tiny\n",
        "ltxv-tiny-original.safetensors": b"\0" * 4000,
        "transformer/diffusion_pytorch_model.bin": b"\0" * 4000,
        "text_encoder/model.fp16.safetensors": b"\0" * 4000,
    }
    hub.add_repo("tiny/ltx", {**files, **junk})

    (snapshot,) = download([Wanted("tiny/ltx")])
    assert {f for _, f in hub.fetched()} == set(files)

    from diffusers import DiffusionPipeline

    from pipeline.backends.hub import hub_cache_dir

    pipe = DiffusionPipeline.from_pretrained(
        "tiny/ltx", cache_dir=hub_cache_dir(), local_files_only=True
    )
    assert type(pipe).__name__ == json.loads(files["model_index.json"])["_class_name"]
    assert Path(snapshot).name == hub.repos["tiny/ltx"].sha


def test_a_new_commit_that_changes_nothing_wanted_costs_no_bytes(hub: HubServer) -> None:
    """The repo moves on (a README edit): every wanted file is 'missing' at the new commit,
    but its content is already in the cache. Nothing is downloaded, no disk space is asked
    for, and the progress total is zero."""
    files = _diffusers_repo()
    hub.add_repo("org/wan", files)
    download([Wanted("org/wan")])
    hub.add_repo("org/wan", {**files, "README.md": b"# edited\n"})  # a new commit
    hub.reset_log()
    reports: list[DownloadProgress] = []
    usage = SimpleNamespace(total=10**12, used=10**12, free=1000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(downloads.shutil, "disk_usage", lambda path: usage)
        (snapshot,) = download([Wanted("org/wan")], progress=reports.append)
    assert Path(snapshot).name == hub.repos["org/wan"].sha
    assert not [r for r in hub.fetched() if r[1].endswith(".safetensors")]  # no weights again
    assert reports and reports[-1].total_bytes == 0
