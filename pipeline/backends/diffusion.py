"""A diffusers image-to-video pipeline behind the :class:`~pipeline.backends.base.Backend` seam.

One class serves every family: :mod:`pipeline.backends.families` holds what differs (rules
read from the loaded components, call keyword arguments) and :mod:`pipeline.presets` the
recommended settings. The pipeline is loaded once and kept between jobs; progress and
cancellation go through ``callback_on_step_end``.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends import families
from pipeline.backends.base import BackendInfo, Emit, RenderPlan, ShouldStop
from pipeline.backends.loader import (
    ModelSource,
    _first_line,
    component_parameters,
    load_pipeline,
    resolve,
    source_for_pipeline,
)
from contract import BackendOptions
from contract import (
    AnimateRequest,
    Cancelled,
    ModelError,
    OutOfMemory,
    PipelineError,
    Progress,
)
from pipeline.presets import frames_for, motion_prompt, snap_size, svd_conditioning

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

logger = logging.getLogger("pipeline")

FAMILY_LABELS = {
    "ltx": "LTX-Video",
    "wan": "Wan",
    "svd": "Stable Video Diffusion",
    "cogvideox": "CogVideoX",
}
TILING_PIXELS = 1024 * 576
"""Decode with VAE tiling above this many pixels per frame (and always when offloading)."""
ACTIVATION_GIB = 6.0
"""Headroom for activations and the VAE decode on top of the weights, for video sizes."""
PREVIEW_SIDE = 256


class DiffusionBackend:
    """Adapter over one loaded diffusers image-to-video pipeline.

    Args:
        model: a preset name (``ltx``, ``wan``, ``wan-14b``, ``svd``, ``cogvideox``), a local
            diffusers directory or a hub repo id; the family comes from model_index.json.
        options: device, dtype, offload, compile and cache settings (defaults: from the machine).
        load: load the weights now (default) rather than on the first plan/render.
    """

    def __init__(
        self,
        model: str | ModelSource,
        *,
        options: BackendOptions | None = None,
        load: bool = True,
    ) -> None:
        self.source = resolve(model) if isinstance(model, str) else model
        self.preset = self.source.preset
        self.options = options or BackendOptions()
        self.offload = "none"
        self.load_seconds = 0.0
        self._pipe: Any = None
        self._rules: families.Constraints | None = None
        self._device: torch.device | None = None
        self.attention = "native"
        """The attention backend the denoiser's self-attention runs on."""
        preset = self.preset
        if self.source.name == preset.name:
            label = preset.label
        else:
            label = f"{Path(self.source.name).name or self.source.name} ({FAMILY_LABELS[self.source.family]})"
        self.info = BackendInfo(
            name=self.source.name,
            label=label,
            family=self.source.family,
            device="cpu",
            is_ai=True,
            supports_prompt=preset.supports_prompt,
            supports_end_image=preset.supports_end_image,
            supports_extend=preset.supports_extend,
            durations=preset.durations,
        )
        if load:
            self.load()

    # --- loading and placement ----------------------------------------------------------------

    @property
    def pipe(self) -> Any:
        """The loaded diffusers pipeline (loads it on first access)."""
        return self.load()

    @property
    def rules(self) -> families.Constraints:
        self.load()
        assert self._rules is not None
        return self._rules

    @classmethod
    def from_pipeline(
        cls,
        pipe: Any,
        *,
        preset: str | None = None,
        name: str | None = None,
        options: BackendOptions | None = None,
    ) -> DiffusionBackend:
        """Adopt a pipeline built in memory (the GPU benchmark builds full-size models from their
        configs, too big to save and load back), placed and sped up as a loaded one would be."""
        backend = cls(source_for_pipeline(pipe, preset=preset, name=name), options=options, load=False)
        started = time.perf_counter()
        device = backend._choose_device()
        backend._install(lambda: pipe, device)
        backend.load_seconds = time.perf_counter() - started
        return backend

    def load(self) -> Any:
        """Load the weights and place them on the device; a no-op once loaded."""
        if self._pipe is not None:
            return self._pipe
        _quiet_libraries()
        started = time.perf_counter()
        device = self._choose_device()
        dtype = self._choose_dtype(device)
        pipe = self._install(
            lambda: load_pipeline(self.source, self._dtype_argument(device, dtype)), device
        )
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "Loaded %s (%s, %s) on %s as %s, offload %s, attention %s, in %.1f s",
            self.source.name,
            type(pipe).__name__,
            self.source.family,
            device,
            str(dtype).removeprefix("torch."),
            self.offload,
            self.attention,
            self.load_seconds,
        )
        return pipe

    def _install(self, load: Callable[[], Any], device: torch.device) -> Any:
        """Load (or take) the pipeline, read its rules, place it and apply the speed-ups."""
        import torch

        try:
            pipe = load()
            pipe.set_progress_bar_config(disable=True)
            self._rules = families.constraints(
                self.source.family, self.source.load_class, pipe, self.preset
            )
            self.offload = self._place(pipe, device)
            self._speedups(pipe, device)
        except torch.cuda.OutOfMemoryError:
            self._free()
            raise OutOfMemory(
                f"The GPU does not have enough free memory to load {self.info.label}; free the GPU or "
                "use a smaller model."
            ) from None
        self._pipe, self._device = pipe, device
        self.info = dataclasses.replace(
            self.info,
            device=str(device),
            supports_end_image=self._rules.supports_end_image,
        )
        return pipe

    def _choose_device(self) -> torch.device:
        import torch

        if self.options.device:
            device = torch.device(self.options.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ModelError(
                    "CUDA was requested but no CUDA GPU is available; use --device cpu."
                )
            return device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _choose_dtype(self, device: torch.device) -> torch.dtype:
        import torch

        name = self.options.dtype or (self.preset.dtype if device.type == "cuda" else "float32")
        if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            name = "float16"
        return getattr(torch, name)

    def _dtype_argument(self, device: torch.device, dtype: torch.dtype) -> Any:
        """Per-component dtypes: the docs keep e.g. Wan's VAE in float32 for decode quality."""
        import torch

        if dtype == torch.float32 or not self.preset.fp32_components:
            return dtype
        return {"default": dtype, **{name: torch.float32 for name in self.preset.fp32_components}}

    def memory_need_gib(self, dtype_bytes: int = 2) -> tuple[float, float]:
        """(GiB to keep everything on the GPU, GiB with model offload), estimated from the
        checkpoint's parameter counts when its files are on disk, else the preset's figures."""
        counts = component_parameters(self.source.files_dir, self.source.model_index)
        if not counts:
            return self.preset.vram_gib, self.preset.offload_vram_gib
        sizes = {
            name: n * (4 if name in self.preset.fp32_components else dtype_bytes) / 2**30
            for name, n in counts.items()
        }
        return sum(sizes.values()) + ACTIVATION_GIB, max(sizes.values()) + ACTIVATION_GIB

    def _place(self, pipe: Any, device: torch.device) -> str:
        """Put the pipeline on the device, choosing offload from free VRAM when asked to."""
        import torch

        if device.type != "cuda":
            pipe.to(device)
            return "none"
        mode = self.options.offload
        if mode == "auto" or (self.options.low_memory and mode == "none"):
            free = torch.cuda.mem_get_info(device)[0] / 2**30
            full, offloaded = self.memory_need_gib(2 if self.preset.dtype != "float32" else 4)
            mode = choose_offload(free, full, offloaded, low_memory=self.options.low_memory)
            logger.info(
                "%.1f GiB VRAM free; %s needs ~%.0f GiB on the GPU, ~%.0f GiB with model offload -> %s",
                free,
                self.source.name,
                full,
                offloaded,
                mode,
            )
        if mode == "none":
            pipe.to(device)
        elif mode == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_group_offload(
                onload_device=device,
                offload_device=torch.device("cpu"),
                offload_type="leaf_level",
                use_stream=True,
            )
        return mode

    def _speedups(self, pipe: Any, device: torch.device) -> None:
        """First-block cache and regional torch.compile, when switched on and supported."""
        denoisers = [getattr(pipe, name, None) for name in ("transformer", "transformer_2", "unet")]
        denoisers = [d for d in denoisers if d is not None]
        backend = choose_attention(self.options.attention, device)
        if backend is not None:
            try:
                for module in denoisers:
                    set_self_attention_backend(module, backend)
                self.attention = backend
            except Exception as exc:  # noqa: BLE001 - a missing kernel must never stop a job
                for module in denoisers:
                    if hasattr(module, "reset_attention_backend"):
                        module.reset_attention_backend()
                logger.warning(
                    "Attention backend %r not used (%s: %s); PyTorch SDPA instead",
                    backend,
                    exc.__class__.__name__,
                    _first_line(exc),
                )
        if self.options.cache:
            from diffusers import FirstBlockCacheConfig

            for module in denoisers:
                if not hasattr(module, "enable_cache"):
                    logger.info("%s has no cache hooks; cache not applied", type(module).__name__)
                    continue
                try:
                    module.enable_cache(
                        FirstBlockCacheConfig(threshold=self.options.cache_threshold)
                    )
                except Exception as exc:  # noqa: BLE001 - a speed-up must never stop a job
                    logger.warning(
                        "First-block cache not applied to %s: %s: %s",
                        type(module).__name__,
                        exc.__class__.__name__,
                        exc,
                    )
        if self.options.compile:
            if device.type != "cuda":
                logger.info("torch.compile skipped: it only pays off on CUDA")
                return
            for module in denoisers:
                if getattr(module, "_repeated_blocks", None):
                    module.compile_repeated_blocks(fullgraph=True)
                else:
                    module.compile()

    # --- Backend protocol ---------------------------------------------------------------------

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        """Size from the photo's aspect ratio (or the request), frames from duration × fps on
        the family's frame rule, the preset's steps and guidance, and the family's extras."""
        from pipeline import intake

        preset, rules = self.preset, self.rules
        warnings: list[str] = []
        fps = int(request.fps or preset.fps)
        num_frames = frames_for(
            request.duration,
            fps,
            frame_step=rules.frame_step,
            min_frames=rules.min_frames,
            max_frames=rules.max_frames,
        )
        if abs(num_frames / fps - request.duration) > max(0.25, 0.1 * request.duration):
            warnings.append(
                f"{self.info.label} makes {num_frames} frames here, so the clip lasts "
                f"{num_frames / fps:.1f} s instead of {request.duration:g} s."
            )

        image_w, image_h = image_size
        aspect = image_w / image_h
        # Size changes are logged, not told to the member: when extending a clip the orchestrator
        # asks for the previous clip's size and scales our frames back to it anyway.
        if rules.fixed_size is not None:
            width, height = rules.fixed_size
            if request.width or request.height:
                logger.info(
                    "%s only renders at %dx%d; requested size not used",
                    self.source.name,
                    width,
                    height,
                )
        elif request.width or request.height:
            want_w = request.width or round(request.height * aspect)  # type: ignore[operator]
            want_h = request.height or round(request.width / aspect)  # type: ignore[operator]
            width, height = snap_size(want_w, want_h, rules.multiple)
            if (width, height) != (want_w, want_h):
                logger.info(
                    "size %dx%d -> %dx%d (multiples of %d)",
                    want_w,
                    want_h,
                    width,
                    height,
                    rules.multiple,
                )
        elif preset.area:
            width, height = intake.size_for_area(aspect, preset.area, rules.multiple)
        else:
            width, height = snap_size(*intake.choose_size(aspect, preset.buckets), rules.multiple)

        steps = int(request.steps or preset.steps)
        timesteps: list[float] = []
        if preset.default_timesteps and steps == len(preset.default_timesteps):
            timesteps = list(preset.default_timesteps)
        seed = int(request.seed) if request.seed is not None else secrets.randbelow(2**31)

        extra: dict[str, Any] = {"call": dict(preset.call_defaults)}
        if timesteps:
            extra["timesteps"] = timesteps
        if preset.supports_prompt:
            extra["prompt"] = motion_prompt(request.prompt, request.camera, request.motion)
            extra["negative_prompt"] = request.negative_prompt.strip() or preset.negative_prompt
        else:  # the orchestrator tells the member that the prompt was not used
            extra["prompt"] = ""
            if request.camera != "static":
                warnings.append(
                    f"{self.info.label} cannot follow camera moves; motion strength sets how "
                    "much the picture moves."
                )
        if self.source.family == "svd":
            extra["call"].update(svd_conditioning(request.motion))
            if self.options.low_memory:
                extra["call"]["decode_chunk_size"] = 2
        extra["warnings"] = tuple(warnings)
        return RenderPlan(
            width=int(width),
            height=int(height),
            num_frames=int(num_frames),
            fps=fps,
            steps=len(timesteps) or steps,
            guidance=float(preset.guidance),
            seed=seed,
            extra=extra,
        )

    def render(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        *,
        end_image: Image.Image | None = None,
        emit: Emit = lambda progress: None,
        should_stop: ShouldStop = lambda: False,
    ) -> np.ndarray:
        """Run the pipeline; uint8 frames (num_frames, height, width, 3).

        Emits Progress("denoise", i, total) per step, Progress("decode") before the VAE decode
        and Progress("decode", 1, 1, preview=JPEG) after it. Raises Cancelled from inside the
        step callback once `should_stop()` is true (so even SVD, which ignores `_interrupt`,
        stops within one step), OutOfMemory when the device runs out of memory.
        """
        import torch

        pipe = self.load()
        if should_stop():
            raise Cancelled()
        image = _fitted(image, plan.width, plan.height)
        if end_image is not None:
            end_image = (
                _fitted(end_image, plan.width, plan.height)
                if self.rules.supports_end_image
                else None
            )
        kwargs = families.call_kwargs(
            self.source.family,
            self.source.load_class,
            plan,
            image.convert("RGB"),
            end_image.convert("RGB") if end_image is not None else None,
        )
        kwargs = families.supported_kwargs(pipe, kwargs)
        self._set_tiling(pipe, plan)
        emit(Progress("denoise", 0, plan.steps))

        def on_step_end(
            pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            if should_stop():
                # Most loops honour _interrupt (SVD's does not); raising ends every family's
                # loop at once and skips the VAE decode of a clip nobody wants.
                pipeline._interrupt = True
                raise Cancelled()
            total = int(getattr(pipeline, "_num_timesteps", 0) or plan.steps)
            emit(Progress("denoise", min(step + 1, total), total))
            if step + 1 >= total:
                emit(Progress("decode", 0, 1, message="Decoding frames"))
            return callback_kwargs

        generator = torch.Generator(device="cpu").manual_seed(plan.seed)
        try:
            output = pipe(
                **kwargs,
                generator=generator,
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        except Cancelled:
            self._after_abort(pipe)
            raise
        except torch.cuda.OutOfMemoryError:
            self._after_abort(pipe)
            raise OutOfMemory(
                f"The GPU ran out of memory for {plan.width}×{plan.height}, {plan.num_frames} frames; "
                "try a shorter or smaller clip."
            ) from None
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
                self._after_abort(pipe)
                raise OutOfMemory(
                    f"Out of memory for {plan.width}×{plan.height}, {plan.num_frames} frames; try a "
                    "shorter or smaller clip."
                ) from None
            raise
        frames = to_uint8(output.frames[0])
        if frames.shape[1:3] != (plan.height, plan.width):
            raise PipelineError(
                f"The model returned {frames.shape[2]}×{frames.shape[1]} frames instead of "
                f"{plan.width}×{plan.height}."
            )
        if len(frames) > plan.num_frames:
            frames = frames[: plan.num_frames]
        emit(Progress("decode", 1, 1, preview=jpeg_preview(frames[0])))
        return frames

    def close(self) -> None:
        """Drop the pipeline and give its GPU memory back."""
        if self._pipe is not None:
            try:
                self._pipe.remove_all_hooks()
            except Exception:  # hooks may not be installed; freeing must not fail
                pass
        self._pipe = None
        self._free()

    # --- helpers ------------------------------------------------------------------------------

    def _set_tiling(self, pipe: Any, plan: RenderPlan) -> None:
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            return
        large = plan.width * plan.height > TILING_PIXELS
        if self.options.low_memory or self.offload != "none" or large:
            vae.enable_tiling()
        elif hasattr(vae, "disable_tiling"):
            vae.disable_tiling()

    def _after_abort(self, pipe: Any) -> None:
        """After an exception inside the call: put offloaded models back and free the cache."""
        try:
            pipe.maybe_free_model_hooks()
        except Exception:  # best effort; the next call re-hooks anyway
            pass
        self._free()

    @staticmethod
    def _free() -> None:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def choose_offload(
    free_gib: float, full_gib: float, offloaded_gib: float, *, low_memory: bool = False
) -> str:
    """ "none" when the whole pipeline fits in free VRAM, "model" (one component on the GPU at a
    time) when the largest component fits, else "group" (layers streamed in). `low_memory`
    (the retry after an OOM) never keeps everything resident."""
    if free_gib >= full_gib and not low_memory:
        return "none"
    if free_gib >= offloaded_gib:
        return "model"
    return "group"


def choose_attention(wanted: str, device: torch.device) -> str | None:
    """The attention backend to set, or None to keep PyTorch SDPA.

    "auto" takes FlashAttention 3 (Hopper) or 2 when the package is installed on a CUDA machine;
    elsewhere SDPA already picks a fused kernel itself.
    """
    if wanted == "native":
        return None
    if wanted != "auto":
        return wanted
    if device.type != "cuda":
        return None
    try:
        from diffusers.models import attention_dispatch as dispatch
    except ImportError:
        return None
    if getattr(dispatch, "_CAN_USE_FLASH_ATTN_3", False):
        return "_flash_3"
    if getattr(dispatch, "_CAN_USE_FLASH_ATTN", False):
        return "flash"
    return None


def set_self_attention_backend(module: Any, backend: str) -> None:
    """`set_attention_backend` for self-attention only.

    Cross-attention to the text carries a padding mask (LTX) that fused kernels such as
    flash-attn refuse, and it is a small share of the work, so it stays on SDPA.
    """
    from diffusers.models.attention_dispatch import AttentionBackendName

    module.set_attention_backend(backend)
    for name, sub in module.named_modules():
        processor = getattr(sub, "processor", None)
        if processor is None or not hasattr(processor, "_attention_backend"):
            continue
        if getattr(sub, "is_cross_attention", False) or name.rsplit(".", 1)[-1] == "attn2":
            processor._attention_backend = AttentionBackendName.NATIVE


def to_uint8(frames: Any) -> np.ndarray:
    """(T, H, W, 3) floats in [0, 1] (or uint8, or PIL images) as a contiguous uint8 array."""
    import numpy as np

    if isinstance(frames, list):
        frames = np.stack([np.asarray(frame.convert("RGB")) for frame in frames])
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise PipelineError(
            f"The model returned frames shaped {array.shape}, not (frames, height, width, 3)."
        )
    return np.ascontiguousarray(array)


def jpeg_preview(frame: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """A small JPEG of one frame, for the progress message."""
    from PIL import Image

    image = Image.fromarray(frame)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _fitted(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image
    from pipeline.intake import fit

    return fit(image, width, height)


def _quiet_libraries() -> None:
    """diffusers/transformers progress bars and load chatter would garble the CLI's bar and the
    worker logs; our own Progress events replace them."""
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
