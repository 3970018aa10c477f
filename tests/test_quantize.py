"""Weight storage levers for the diffusion transformers (pipeline.backends.quantize): fp8
storage through diffusers' layerwise casting, and transformers read from GGUF files in the
original (non-diffusers) key layout, as QuantStack and city96 publish Wan 2.2 and LTX-Video.

Tiny random-weight models written as Q8_0 GGUFs stand in for the multi-GB files; everything
runs on the CPU.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_models import (
    _wan_transformer,
    ltx_transformer,
    tiny_wan_a14b_dir,  # noqa: F401
    write_ltx_gguf,
    write_wan_gguf,
)

from contract import ModelError
from pipeline.backends.quantize import (
    Fp8StorageConfig,
    GGUFConfig,
    apply_fp8_storage,
    load_gguf_components,
)

WAN = {"transformer": "WanTransformer3DModel", "transformer_2": "WanTransformer3DModel"}


def relative_error(actual: Any, expected: Any) -> float:
    actual, expected = (
        torch.as_tensor(np.asarray(x), dtype=torch.float64) for x in (actual, expected)
    )
    return float((actual - expected).norm() / expected.norm())


def load(
    files: dict[str, Path],
    config_dir: Path,
    class_names: dict[str, str] = WAN,
    dtype: str = "float32",
) -> dict[str, Any]:
    return load_gguf_components(
        GGUFConfig(
            files={name: str(path) for name, path in files.items()}, compute_dtype=dtype
        ),
        config_dir=str(config_dir),
        local_files_only=True,
        cache_dir=None,
        class_names=class_names,
    )


def render(pipeline: Any) -> np.ndarray:
    """Five 32×32 frames of a tiny Wan pipeline, two steps, a fixed seed."""
    from PIL import Image

    return pipeline(
        image=Image.new("RGB", (32, 32), (90, 140, 200)),
        prompt="a cat",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        guidance_scale=1.0,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames[0]


def parameter_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.fixture(scope="module")
def wan32(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """(a tiny Wan transformer 32 wide, so that every linear layer's rows fill Q8_0 blocks; its
    config folder; its Q8_0 GGUF in Wan's own layout)."""
    model = _wan_transformer(attention_head_dim=16, ffn_dim=64).eval()
    folder = tmp_path_factory.mktemp("wan32")
    model.save_pretrained(folder / "transformer")
    return model, folder, write_wan_gguf(model, folder / "wan32-Q8_0.gguf")


def wan_inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 36, 2, 8, 8, generator=generator)
    text = torch.randn(1, 6, 32, generator=generator)
    return latents, torch.tensor([700.0]), text


def test_a_q8_0_wan_gguf_loads_quantized_and_computes_like_the_float_model(
    wan32,
) -> None:
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter
    from gguf import GGMLQuantizationType

    original, folder, file = wan32
    model = load({"transformer": file}, folder)["transformer"]

    quantized = {n for n, m in model.named_modules() if isinstance(m, GGUFLinear)}
    linears = {n for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)}
    # Wan keeps its time embedder in float32 (_keep_in_fp32_modules): diffusers dequantizes it.
    assert (
        quantized == {n for n in linears if ".time_embedder." not in n}
        and len(quantized) == 24
    )
    weight = model.blocks[0].attn1.to_q.weight
    assert (
        isinstance(weight, GGUFParameter)
        and weight.quant_type == GGMLQuantizationType.Q8_0
    )
    assert weight.dtype == torch.uint8 and weight.shape == (
        32,
        34,
    )  # 2 scale + 32 int8 bytes a block
    assert model.blocks[0].norm2.weight.dtype == torch.float32
    assert model.scale_shift_table.dtype == torch.float32
    # Q8_0 is 34 bytes per 32 weights; norms, biases and embeddings stay float32.
    assert parameter_bytes(model) < 0.55 * parameter_bytes(original)

    with torch.no_grad():
        expected = original(*wan_inputs(), return_dict=False)[0]
        actual = model(*wan_inputs(), return_dict=False)[0]
    # Q8_0 rounds each weight to 1/254 of its block's largest: ~0.4 % here, well under 2 %.
    assert 0 < relative_error(actual, expected) < 0.02


def test_b_a14b_pipeline_renders_with_both_experts_from_gguf(
    tiny_wan_a14b_dir: Path, tmp_path: Path
) -> None:
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from pipeline.backends.loader import load_pipeline
    from pipeline.backends.source import resolve

    source = resolve(str(tiny_wan_a14b_dir))
    reference = load_pipeline(source, torch.float32)
    files = {
        name: write_wan_gguf(getattr(reference, name), tmp_path / f"{name}-Q8_0.gguf")
        for name in ("transformer", "transformer_2")
    }
    classes = {name: source.model_index[name][1] for name in files}
    components = load(files, tiny_wan_a14b_dir, classes)
    pipe = load_pipeline(source, torch.float32, components=components)

    for name in files:
        expert = getattr(pipe, name)
        assert expert is components[name]
        # The tiny experts are 24 wide: only the layers whose rows fill 32-value blocks (the
        # text embedder's first layer, each block's second FFN layer) are Q8_0, the rest F16.
        assert {n for n, m in expert.named_modules() if isinstance(m, GGUFLinear)} == {
            "condition_embedder.text_embedder.linear_1",
            "blocks.0.ffn.net.2",
            "blocks.1.ffn.net.2",
        }
    assert (
        apply_fp8_storage(pipe, Fp8StorageConfig(), torch.float32) == []
    )  # already quantized

    frames = render(pipe)
    expected = render(reference)
    assert (
        frames.shape == expected.shape == (5, 32, 32, 3) and np.isfinite(frames).all()
    )
    assert relative_error(frames, expected) < 0.02


def test_c_fp8_storage_halves_the_experts_bytes_and_keeps_norms(
    tiny_wan_a14b_dir: Path,
) -> None:

    from pipeline.backends.loader import load_pipeline
    from pipeline.backends.source import resolve

    source = resolve(str(tiny_wan_a14b_dir))
    reference = load_pipeline(source, torch.float32)
    pipe = load_pipeline(source, torch.float32)
    linears = [
        m for m in pipe.transformer.blocks.modules() if isinstance(m, torch.nn.Linear)
    ]
    bf16_bytes = sum(m.weight.numel() * 2 for m in linears)

    assert apply_fp8_storage(pipe, Fp8StorageConfig(), torch.float32) == [
        "transformer",
        "transformer_2",
    ]

    for expert in (pipe.transformer, pipe.transformer_2):
        assert expert.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
        assert expert.blocks[1].ffn.net[2].weight.dtype == torch.float8_e4m3fn
        # Precision-critical and small: stay in the compute dtype.
        assert expert.blocks[0].norm2.weight.dtype == torch.float32
        assert expert.blocks[0].attn1.norm_q.weight.dtype == torch.float32
        assert expert.patch_embedding.weight.dtype == torch.float32
        assert expert.condition_embedder.time_proj.weight.dtype == torch.float32
        assert expert.proj_out.weight.dtype == torch.float32
        assert expert.scale_shift_table.dtype == torch.float32
        assert expert.dtype == torch.float32  # what the pipeline casts its latents to
    assert (
        sum(m.weight.numel() * m.weight.element_size() for m in linears)
        == bf16_bytes // 2
    )
    assert (
        pipe.text_encoder.dtype == pipe.vae.dtype == torch.float32
    )  # only the denoisers

    frames = render(pipe)
    expected = render(reference)
    assert np.isfinite(frames).all()
    # e4m3 keeps 3 mantissa bits (~3 % per weight); over a whole render the output moves far
    # less (0.05 % here).
    assert 0 < relative_error(frames, expected) < 0.01
    # The weights go back to fp8 after each forward.
    assert pipe.transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn


def test_c_fp8_storage_after_offload_hooks_is_refused(wan32) -> None:
    from accelerate.hooks import ModelHook, add_hook_to_module
    from diffusers import WanTransformer3DModel

    _, folder, _ = wan32
    model = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    add_hook_to_module(model, ModelHook())  # what enable_model_cpu_offload leaves

    class Pipe:
        transformer = model

    with pytest.raises(ValueError, match="before offload hooks"):
        apply_fp8_storage(Pipe(), Fp8StorageConfig(), torch.float32)
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.float32


def test_d_a_cut_gguf_is_one_model_error_naming_the_file(wan32, tmp_path: Path) -> None:
    _, folder, file = wan32
    whole = file.read_bytes()
    for size in (0, 100, len(whole) // 2, len(whole) - 10):
        cut = tmp_path / f"Wan2.2-cut-{size}.gguf"
        cut.write_bytes(whole[:size])
        with pytest.raises(ModelError) as caught:
            load({"transformer": cut}, folder)
        message = caught.value.message
        assert message.startswith(
            f"{cut.name!r} (the transformer) is not a complete GGUF file"
        )
        assert message.endswith("download it again.") and "\n" not in message


def test_d_a_gguf_of_another_model_is_one_model_error(wan32, tmp_path: Path) -> None:
    _, folder, _ = wan32
    wider = write_wan_gguf(
        _wan_transformer(attention_head_dim=32, ffn_dim=64), tmp_path / "wider.gguf"
    )
    with pytest.raises(
        ModelError,
        match=r"^Cannot load the transformer from 'wider.gguf': .*expected shape",
    ):
        load({"transformer": wider}, folder)

    import gguf

    partial = tmp_path / "partial.gguf"
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_tensor("head.head.weight", np.zeros((64, 32), np.float32))
    writer.write_header_to_file(path=partial)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        ModelError, match=r"^Cannot load the transformer from 'partial.gguf': it lacks"
    ):
        load({"transformer": partial}, folder)


def test_d_missing_file_component_or_package_are_model_errors(
    wan32, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, folder, file = wan32
    with pytest.raises(ModelError, match="does not exist"):
        load({"transformer": tmp_path / "nowhere.gguf"}, folder)
    with pytest.raises(ModelError, match="this model has no transformer_2"):
        load({"transformer_2": file}, folder, {"transformer": "WanTransformer3DModel"})

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gguf" else find_spec(name, *a),
    )
    with pytest.raises(
        ModelError, match=r"need the `gguf` package.*pip install 'gguf>=0.10'"
    ):
        load({"transformer": file}, folder)


def test_e_ltx_gguf_in_ltx_videos_layout_loads_too(tmp_path: Path) -> None:
    from diffusers.quantizers.gguf.utils import GGUFLinear

    original = ltx_transformer().eval()
    original.save_pretrained(tmp_path / "transformer")
    file = write_ltx_gguf(original, tmp_path / "ltxv-2b-Q8_0.gguf")
    model = load(
        {"transformer": file}, tmp_path, {"transformer": "LTXVideoTransformer3DModel"}
    )["transformer"]
    assert isinstance(model.transformer_blocks[0].attn1.to_q, GGUFLinear)

    generator = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(1, 2 * 4 * 4, 8, generator=generator),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_attention_mask": torch.ones(1, 6),
        "num_frames": 2,
        "height": 4,
        "width": 4,
        "return_dict": False,
    }
    with torch.no_grad():
        assert 0 < relative_error(model(**inputs)[0], original(**inputs)[0]) < 0.02
