"""A diffusers image-to-video pipeline behind the :class:`~pipeline.backends.base.Backend` seam.

One class serves every family by composing small parts: the family object
(:mod:`pipeline.backends.families`) holds what differs between LTX, Wan, SVD and CogVideoX,
:mod:`pipeline.backends.placement` where the weights live, :mod:`pipeline.backends.speedups`
the optional kernels, and :mod:`pipeline.presets` the recommended settings. The pipeline is
loaded once and kept between jobs; progress and cancellation go through
``callback_on_step_end``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import (
    MAX_UPSCALED_SIDE,
    AnimateRequest,
    BackendOptions,
    Cancelled,
    Effect,
    FinishUnavailable,
    InputError,
    ModelError,
    OutOfMemory,
    PipelineError,
    Progress,
    is_out_of_memory,
    one_line,
    random_seed,
)
from pipeline.audio import Soundtrack
from pipeline.backends import placement
from pipeline.backends.base import BackendInfo, Emit, Rendered, RenderPlan, ShouldStop
from pipeline.backends.families import Constraints, family_for, supported_kwargs
from pipeline.backends.families.ltx import CONDITION_CLASS as LTX_CONDITION_CLASS
from pipeline.backends.families.ltx2 import sample_rate
from pipeline.backends.frames import fitted, jpeg_preview, to_uint8
from pipeline.backends.hub import fetch_files, hub_cache_dir
from pipeline.backends.loader import (
    component_parameters,
    load_pipeline,
    quiet_libraries,
)
from pipeline.backends.lora import fuse_loras, load_effects, use_effect
from pipeline.backends.quantize import (
    Fp8StorageConfig,
    GGUFConfig,
    apply_fp8_storage,
    load_gguf_components,
)
from pipeline.backends.sizing import render_size
from pipeline.backends.source import ModelSource, resolve, source_for_pipeline
from pipeline.backends.speedups import denoisers
from pipeline.backends.speedups.attention import (
    NATIVE,
    AttentionConfig,
    apply_attention,
    choose_attention,
)
from pipeline.backends.speedups.cache import CacheConfig, apply_first_block_cache
from pipeline.backends.speedups.compile import (
    CompileConfig,
    apply_regional_compile,
    compile_config,
)
from pipeline.backends.speedups.warmup import (
    SpeedUp,
    prove_each,
    remove_attention_kernel,
    remove_cache,
    remove_compile,
)
from pipeline.backends.text_on_cpu import detach_text_encoder, with_prompt_embeddings
from pipeline.finish.latent import NOTE as LATENT_UPSCALE_NOTE
from pipeline.finish.latent import (
    load_latent_upsampler,
    upsample_latents,
    upsampler_dir,
)
from pipeline.memory.planner import Tier
from pipeline.presets import LatentUpscale, frames_for, motion_prompt

HALF_FRAMES_NOTE = (
    "Rendered at {fps} fps; RIFE drew every other frame to make {out} fps (HALF_FRAMES)."
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

logger = logging.getLogger("pipeline")

CACHE_MIN_STEPS = 20
"""Caches reuse a step's work when the next one would barely differ; below this many steps
(distilled presets) consecutive steps differ too much for that to pay."""


_AVOIDED: dict[tuple[str, str], set[str]] = {}
"""(checkpoint, device) → the storage or offload modes that failed their warm-up render in this
process: a later load of it (after an eviction, the low-memory retry) plans without them at
once instead of failing the same warm-up again."""


class _PlacementFailed(Exception):
    """The warm-up render failed with this storage or offload mode on (DiffusionBackend.load
    plans again without it)."""

    def __init__(self, key: str, name: str, message: str) -> None:
        super().__init__(name)
        self.key, self.name, self.message = key, name, message


class _NotThePlacement(ModelError):
    """The warm-up render fails without the storage or offload mode blamed before, too."""


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
        self.family = family_for(self.source.family)
        self.options = options or BackendOptions()
        self.offload: placement.Placement = "none"
        self.tier: Tier | None = None
        """How the weights are stored and placed (see placement.choose_tier)."""
        self._placed = False
        """Whether the tier's placement is decided; else the free-VRAM rule places it."""
        self._text_encoder: Any = None
        """The text encoder, on the CPU and out of the pipeline, when the plan says so."""
        self.load_seconds = 0.0
        self._pipe: Any = None
        self._rules: Constraints | None = None
        self._device: torch.device | None = None
        self._tiling = placement.TilingConfig(force=self.options.low_memory)
        self.attention = "native"
        """The attention backend the denoiser's self-attention runs on."""
        self._effects: dict[str, tuple[Effect, list[str]]] = {}
        """Effect name -> (its settings, its adapters on the pipeline)."""
        self._effect_on: str | None = None
        self._kept: tuple[tuple[str, float], ...] = ()
        """Always-on LoRAs left as adapters (GGUF denoisers cannot take a fused LoRA)."""
        self._latent_upsampler: Any = None
        """LTX's spatial latent upsampler, loaded by the first job that upscales with it."""
        self._compiled = False
        """Whether torch.compile is on the denoisers (Dynamo's code cache then outlives them)."""
        self._avoid: set[str] = set()
        """Weight storage or offload modes ("fp8", "model", "group") whose warm-up render
        failed on this device (shared by every load of this checkpoint: _AVOIDED)."""
        self._prove_placements = True
        """Whether a load proves fp8 storage and offloading by a warm-up render (not for a
        pipeline adopted by from_pipeline: the GPU benchmark times its own runs)."""
        self._blamed: _PlacementFailed | None = None
        """What the previous attempt of this load blamed, while the next proves it was so."""
        # A checkpoint that is not a preset is described by its family's preset card, under its
        # own name.
        label = None
        if self.source.name != self.preset.name:
            label = f"{Path(self.source.name).name or self.source.name} ({self.family.label})"
        self.info = BackendInfo.from_card(
            self.preset.card, name=self.source.name, label=label, family=self.source.family
        )
        if load:
            self.load()

    # --- loading and placement ----------------------------------------------------------------

    @property
    def pipe(self) -> Any:
        """The loaded diffusers pipeline (loads it on first access)."""
        return self.load()

    @property
    def rules(self) -> Constraints:
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
        backend._prove_placements = False
        started = time.perf_counter()
        device = placement.choose_device(backend.options)
        backend._install(lambda: pipe, device)
        backend.load_seconds = time.perf_counter() - started
        return backend

    def load(self) -> Any:
        """Load the weights and place them on the device; a no-op once loaded."""
        if self._pipe is not None:
            return self._pipe
        quiet_libraries()
        started = time.perf_counter()
        device = placement.choose_device(self.options)
        dtype = placement.choose_dtype(self.options, self.preset, device)

        def load() -> Any:
            components = self._quantized_components(dtype) if self.tier and self.tier.is_gguf else {}
            return load_pipeline(
                self.source, placement.dtype_argument(self.preset, dtype), components=components
            )

        self._avoid = _AVOIDED.setdefault((self.source.name, str(device)), set())
        self._blamed = None
        failed: _PlacementFailed | None = None
        not_it: _NotThePlacement | None = None
        while True:
            if failed is not None:  # the failed placement is unreachable: its memory is free
                placement.free_device_memory()
            self.tier, self._placed = placement.choose_tier(
                self.options,
                self.preset,
                device,
                is_preset=self.source.name == self.preset.name,
                label=self.info.label,
                avoid=frozenset(self._avoid),
            )
            try:
                pipe = self._install(load, device)
                break
            except _PlacementFailed as exc:
                failed = exc.with_traceback(None)  # no frame of it keeps the pipeline
            except _NotThePlacement as exc:
                # Without the mode blamed it fails alike: it was not the cause.
                assert self._blamed is not None
                self._avoid.discard(self._blamed.key)
                not_it = exc.with_traceback(None)
                break
            # A job never fails because a speed-up did: load again without it (and prove that
            # load too: the blame may be wrong).
            logger.warning(
                "%s failed its warm-up render on %s (%s); loading %s again without it",
                failed.name, device, failed.message, self.info.label,
            )
            self._avoid.add(failed.key)
            self._blamed = failed
        self._blamed = None
        if not_it is not None:  # outside the handler: nothing holds the dropped pipeline now
            placement.free_device_memory()
            raise not_it
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "Loaded %s (%s, %s) on %s as %s, weights %s, offload %s, attention %s, in %.1f s",
            self.source.name,
            type(pipe).__name__,
            self.source.family,
            device,
            str(dtype).removeprefix("torch."),
            self.tier.storage if self.tier else "as saved",
            self.offload,
            self.attention,
            self.load_seconds,
        )
        return pipe

    def _quantized_components(self, dtype: torch.dtype) -> dict[str, Any]:
        """The denoisers from the preset's GGUF files of the planned quantization (fetched
        into the hub cache when missing and the hub is reachable)."""
        assert self.tier is not None
        published = self.preset.gguf
        if published is None:
            raise ModelError(
                f"{self.info.label} has no GGUF files to load as {self.tier.storage}; use "
                "WEIGHTS=auto, bf16 or fp8."
            )
        wanted = published.for_quant(self.tier.storage)
        paths = fetch_files(list(wanted.values()), "The GGUF file")  # together: one progress
        files = dict(zip(wanted, paths, strict=True))
        source = self.source
        return load_gguf_components(
            GGUFConfig(files=files, compute_dtype=str(dtype).removeprefix("torch.")),
            config_dir=source.files_dir or source.location,
            local_files_only=source.local_files_only,
            cache_dir=None if source.is_local else hub_cache_dir(),
            class_names={name: source.model_index[name][1] for name in files},
        )

    def _install(self, load: Callable[[], Any], device: torch.device) -> Any:
        """Load (or take) the pipeline, read its rules, place it and apply the speed-ups."""
        out_of_memory = False
        try:
            pipe = load()
            pipe.set_progress_bar_config(disable=True)
            self._adapt(pipe)
            self._rules = self.family.constraints(self.source.load_class, pipe, self.preset)
            self._place(pipe, device)
        except Exception as exc:
            if not is_out_of_memory(exc) or isinstance(exc, PipelineError):
                raise
            out_of_memory = True
        if out_of_memory:
            # Free only outside the handler, once the half-placed pipeline is unreachable: the
            # exception's frames hold it, and memory freed while it lives stays "used", so the
            # next placement would pick a slower offload than it needs.
            pipe = None
            placement.free_device_memory()
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
        self._prove_placement()
        self._speed_up(pipe, device)
        return pipe

    def _prove_placement(self) -> None:
        """fp8 storage and offloading are speed-ups too (they let a model run at all on a
        smaller card): a warm-up render proves them before any member's job. One that fails
        it is named in a _PlacementFailed (fp8 first, the newer and rarer path), and
        :meth:`load` plans again without it, proving that load as well. Out of memory is left
        to the low-memory retry; a PipelineError (the pipeline's own sentence) blames nothing.
        The pipeline is only dropped here: the caller frees its memory once it is unreachable."""
        if not self._prove_placements:
            return
        suspects = []
        if self.tier is not None and self.tier.storage == "fp8":
            suspects.append(("fp8", "fp8 weight storage"))
        if self.offload in ("model", "group"):
            suspects.append((self.offload, f"{self.offload} offload"))
        suspects = [(key, name) for key, name in suspects if key not in self._avoid]
        if not suspects and self._blamed is None:
            return
        failure: BaseException | None = None
        try:
            self._warm_up_render()
        except Exception as exc:
            failure = exc.with_traceback(None)  # no frame of the render keeps the pipeline
        if failure is None:
            return
        self._drop()
        if is_out_of_memory(failure) or isinstance(failure, OutOfMemory):
            raise OutOfMemory(
                f"The GPU does not have enough free memory to run {self.info.label}; free the GPU "
                "or use a smaller model."
            )
        if isinstance(failure, PipelineError):
            raise failure
        if suspects:
            key, name = suspects[0]
            raise _PlacementFailed(key, name, one_line(failure, 200))
        raise _NotThePlacement(
            f"{self.info.label} fails a two-step warm-up render on this machine "
            f"({one_line(failure, 200)}); see the worker's log."
        )

    def _adapt(self, pipe: Any) -> None:
        """The preset's scheduler and LoRAs, then the operator's LoRAs: changes to the weights
        and the sampler that come before placement, offload and speed-ups."""
        preset = self.preset
        if preset.scheduler or preset.scheduler_config:
            import diffusers

            kind = getattr(diffusers, preset.scheduler) if preset.scheduler else type(pipe.scheduler)
            pipe.scheduler = kind.from_config(pipe.scheduler.config, **preset.scheduler_config)
        quantized = self.tier is not None and self.tier.is_gguf
        self._kept = fuse_loras(
            pipe, (*preset.loras, *self.options.loras_for(self.source.name)), quantized=quantized
        )
        effects = self.options.effects_for(self.source.name)
        adapters = load_effects(pipe, effects, kept=self._kept)
        self._effects = {
            effect.name: (effect, adapters[effect.name]) for effect in effects
        }
        self._effect_on = None

    def _effect(self, name: str | None) -> Effect | None:
        if name is None:
            return None
        if name not in self._effects:
            offered = ", ".join(self._effects) or "none"
            raise ModelError(
                f"The effect {name!r} is not set up for {self.info.label} here (effects: {offered})."
            )
        return self._effects[name][0]

    def _switch_effect(self, pipe: Any, name: str | None) -> None:
        """The job's effect on, any other off; nothing to do when it is already so."""
        if name == self._effect_on or not self._effects:
            return
        if name is None:
            use_effect(pipe, None, kept=self._kept)
        else:
            effect, adapters = self._effects[name]
            use_effect(pipe, adapters, [spec.strength for spec in effect.loras], kept=self._kept)
        self._effect_on = name

    def memory_need_gib(self, dtype_bytes: int = 2) -> tuple[float, float]:
        """(GiB to keep everything on the GPU, GiB with model offload), estimated from the
        checkpoint's parameter counts when its files are on disk, else the preset's figures."""
        counts = component_parameters(self.source.files_dir, self.source.model_index)
        return placement.memory_need_gib(counts, self.preset, dtype_bytes)

    def _place(self, pipe: Any, device: torch.device) -> None:
        """Store the denoisers as planned (fp8 before any offload hook), then put the pipeline
        on the device: as the memory plan says, else by free VRAM against the checkpoint's
        size."""
        if self.tier is not None and self.tier.text_encoder_on_cpu:
            self._text_encoder = detach_text_encoder(pipe)
        if self.tier is not None and self.tier.storage == "fp8":
            # Compute in the denoiser's dtype (pipe.dtype may be a float32 VAE's).
            apply_fp8_storage(pipe, Fp8StorageConfig(), compute_dtype=denoisers(pipe)[0].dtype)
        if self.tier is not None and self._placed:
            config = placement.OffloadConfig(device=device, mode=self.tier.placement)
        else:
            dtype_bytes = 2 if self.preset.dtype != "float32" else 4
            config = placement.offload_config(
                self.options, device, lambda: self.memory_need_gib(dtype_bytes),
                name=self.source.name, avoid=frozenset(self._avoid),
            )  # fmt: skip
        placement.apply_offload(pipe, config)
        self.offload = config.mode
        self._tiling = placement.tiling_config(self.options, config)

    def _speed_up(self, pipe: Any, device: torch.device) -> None:
        """Attention kernel, first-block cache and regional torch.compile, when asked for,
        each proven by a warm-up render (see :mod:`.speedups.warmup`)."""
        modules = denoisers(pipe)
        speed_ups: list[SpeedUp] = []
        backend = choose_attention(self.options.attention, device)
        self.attention = NATIVE
        if backend is not None:
            config = AttentionConfig(backend, masked_cross_attention=self.family.masked_cross_attention)

            def attention_on() -> bool:
                self.attention = apply_attention(modules, config)
                return self.attention != NATIVE

            def attention_off() -> None:
                remove_attention_kernel(modules)()
                self.attention = NATIVE

            speed_ups.append(SpeedUp(f"attention kernel {backend}", attention_on, attention_off))
        if self.options.cache and self.preset.steps < CACHE_MIN_STEPS:
            logger.info(
                "CACHE=true ignored for %s: %d steps is a distilled schedule, where each step "
                "changes the picture a lot and a cache would skip the work that matters",
                self.info.label, self.preset.steps,
            )
        elif self.options.cache:

            def cache_on() -> bool:
                apply_first_block_cache(modules, CacheConfig(self.options.cache_threshold))
                return True

            speed_ups.append(SpeedUp("first-block cache", cache_on, remove_cache(modules)))
        if self.options.compile:

            def compile_on() -> bool:
                self._compiled = apply_regional_compile(modules, device, self.compile_config())
                return self._compiled

            def compile_off() -> None:
                remove_compile(modules)()
                self._compiled = False

            speed_ups.append(SpeedUp("torch.compile", compile_on, compile_off))
        if speed_ups:
            started = time.perf_counter()
            kept = prove_each(speed_ups, self._warm_up_render)
            logger.info("speed-ups proven by a warm-up render: %s (%.1f s)",
                        ", ".join(kept) or "none", time.perf_counter() - started)

    def _warm_up_render(self) -> None:
        """Two steps of a tiny clip: what proves a speed-up works on this machine."""
        from PIL import Image

        multiple = self.rules.multiple
        side = max(multiple, -(-64 // multiple) * multiple)
        request = AnimateRequest(
            image=b"", prompt="warm-up", seed=0, duration=0.1, fps=8, width=side, height=side, steps=2
        )
        plan = self.plan(request, (side, side))
        self.render(Image.new("RGB", (plan.width, plan.height), (128, 128, 128)), plan, request)

    def compile_config(self) -> CompileConfig:
        return compile_config(cache=self.options.cache, offload=self.offload)

    def call_arguments(
        self, plan: RenderPlan, image: Image.Image, end_image: Image.Image | None = None
    ) -> dict[str, Any]:
        """The pipeline call's keyword arguments for `plan` (without generator, output type
        and callback), in this family's spelling and limited to what ``__call__`` takes."""
        kwargs = self.family.call_kwargs(self.source.load_class, plan, image, end_image)
        return supported_kwargs(self.pipe, kwargs)

    # --- Backend protocol ---------------------------------------------------------------------

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        """Size from the photo's aspect ratio (or the request), frames from duration × fps on
        the family's frame rule, the preset's steps and guidance, and the family's extras."""
        
        preset, rules = self.preset, self.rules
        warnings: list[str] = []
        fps = int(request.fps or preset.fps)

        def frames_at(rate: int) -> int:
            return frames_for(
                request.duration, rate, frame_step=rules.frame_step,
                min_frames=rules.min_frames, max_frames=rules.max_frames,
            )

        num_frames = frames_at(fps)
        width, height = render_size(request, image_size, rules, preset, name=self.source.name)
        upscaled = 2 if self._latent_upscale(request, int(width), int(height)) else 1
        interpolated = 1
        if self._half_frames(request, fps, num_frames, int(width), int(height), upscaled):
            # Every other frame: the model renders at half the rate, RIFE draws the rest.
            interpolated, fps = 2, fps // 2
            num_frames = frames_at(fps)
            warnings.append(HALF_FRAMES_NOTE.format(fps=fps, out=fps * 2))
        played = ((num_frames - 1) * interpolated + 1) / (fps * interpolated)
        if abs(played - request.duration) > max(0.25, 0.1 * request.duration):
            warnings.append(
                f"{self.info.label} makes {(num_frames - 1) * interpolated + 1} frames here, so "
                f"the clip lasts {played:.1f} s instead of {request.duration:g} s."
            )

        steps = int(request.steps or preset.steps)
        timesteps: list[float] = []
        sigmas: list[float] = []
        if preset.default_timesteps and steps == len(preset.default_timesteps):
            timesteps = list(preset.default_timesteps)
        elif preset.default_sigmas and steps == len(preset.default_sigmas):
            sigmas = list(preset.default_sigmas)
        seed = int(request.seed) if request.seed is not None else random_seed()

        prompt = negative = ""
        effect = self._effect(request.effect)
        if self.info.supports_prompt:
            prompt = motion_prompt(request.prompt, request.camera, request.motion)
            if effect is not None and effect.prompt:
                prompt = f"{prompt} {effect.prompt}"
            negative = request.negative_prompt.strip() or preset.negative_prompt
        elif request.camera != "static":  # the orchestrator says the prompt was not used
            warnings.append(
                f"{self.info.label} cannot follow camera moves; motion strength sets how "
                "much the picture moves."
            )
        if upscaled > 1:
            warnings.append(LATENT_UPSCALE_NOTE)
        return RenderPlan(
            width=int(width),
            height=int(height),
            num_frames=int(num_frames),
            fps=fps,
            steps=len(timesteps) or len(sigmas) or steps,
            guidance=float(preset.guidance),
            seed=seed,
            prompt=prompt,
            negative_prompt=negative,
            timesteps=tuple(timesteps),
            sigmas=tuple(sigmas),
            call={**preset.call_defaults, **self.family.call_extras(request, self.options)},
            warnings=tuple(warnings),
            # The photo (and an end image) condition the second pass at the larger size.
            source_size=(int(width) * upscaled, int(height) * upscaled) if upscaled > 1 else None,
            upscaled=upscaled,
            interpolated=interpolated,
        )

    def _half_frames(
        self, request: AnimateRequest, fps: int, num_frames: int, width: int, height: int,
        upscaled: int,
    ) -> bool:
        """Whether this job renders every other frame (HALF_FRAMES): a fresh clip at an even
        rate of 16 fps or more, of a family told its frame rate (LTX), and RIFE at full
        quality can draw the rest, with whatever finishing the member asked on top, here in
        time (its weights are here; on a CPU, a small clip). Else the model renders every
        frame, as without the setting: the speed-up never costs a job. `upscaled`: the model
        hands over frames this many times `width` × `height` (LTX's latent upsampler)."""
        if (
            not self.options.half_frames
            or fps % 2
            or fps < 16
            or request.previous_clip is not None
            or getattr(request, "finish_clip", None) is not None
        ):
            return False
        if not self.family.paced_by_frame_rate:
            logger.info(
                "HALF_FRAMES: %s renders every frame: %s is not told the frame rate, so half "
                "the frames would play in slow motion", self.source.name, self.family.label,
            )
            return False
        from pipeline.finish import FinishPlan, check

        try:
            method = check(
                FinishPlan.of(request, upscaled=upscaled, interpolated=2),
                frames=(num_frames + 1) // 2, width=width * upscaled, height=height * upscaled,
                fps=fps // 2, device=placement.choose_device(self.options).type,
            )["smooth"]
        except InputError:
            return False  # the member's finishing is refused on its own, with or without this
        except FinishUnavailable as exc:
            logger.info("HALF_FRAMES: %s renders every frame: %s", self.source.name, exc)
            return False
        if method.flow_side is not None:
            logger.info("HALF_FRAMES: %s renders every frame: RIFE would run at reduced size here", self.source.name)
            return False
        return True

    def _latent_upscale(self, request: AnimateRequest, width: int, height: int) -> LatentUpscale | None:
        """The preset's latent upsampler settings when this job upscales 2× inside the render:
        asked on a fresh clip of a preset that has one (loaded as LTXConditionPipeline), within
        the upscaled size limit, its weights on this machine. Else None: Real-ESRGAN upscales
        the frames afterwards, or refuses in its own words."""
        settings = self.preset.latent_upscale
        if (
            settings is None
            or request.upscale != 2
            or request.previous_clip is not None
            or getattr(request, "finish_clip", None) is not None
            or self.source.name != self.preset.name
            or self.source.load_class != LTX_CONDITION_CLASS
            or max(width, height) * 2 > MAX_UPSCALED_SIDE
        ):
            return None
        try:
            upsampler_dir(settings)
        except FinishUnavailable as exc:
            logger.info("%s: %s Real-ESRGAN upscales instead.", self.info.label, exc.message)
            return None
        return settings

    def render(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        *,
        end_image: Image.Image | None = None,
        emit: Emit = lambda progress: None,
        should_stop: ShouldStop = lambda: False,
    ) -> np.ndarray | Rendered:
        """Run the pipeline; uint8 frames (num_frames, height, width, 3), with the sound track
        when the model makes one and the request wants it. A plan with ``upscaled`` 2 (an LTX
        preset's latent upsampler) renders in two passes and returns frames of twice the
        plan's width and height.

        Emits Progress("denoise", i, total) per step (both passes counted in one total),
        Progress("decode") before the VAE decode
        and Progress("decode", 1, 1, preview=JPEG) after it. Raises Cancelled from inside the
        step callback once `should_stop()` is true (so even SVD, which ignores `_interrupt`,
        stops within one step), OutOfMemory when the device runs out of memory.
        """
        import torch

        pipe = self.load()
        if should_stop():
            raise Cancelled()
        photo, last = image, end_image
        image = fitted(image, plan.width, plan.height)
        if end_image is not None:
            end_image = (
                fitted(end_image, plan.width, plan.height)
                if self.rules.supports_end_image
                else None
            )
        kwargs = self.call_arguments(
            plan,
            image.convert("RGB"),
            end_image.convert("RGB") if end_image is not None else None,
        )
        if self._text_encoder is not None:
            kwargs = with_prompt_embeddings(
                pipe, self._text_encoder, kwargs, guidance=plan.guidance, device=self._device
            )
        placement.apply_vae_tiling(pipe, self._tiling, plan.width, plan.height)
        self._effect(request.effect)  # a ModelError for an effect this worker lacks
        self._switch_effect(pipe, request.effect)
        scale = plan.upscaled
        latent = self.preset.latent_upscale if scale > 1 else None
        if scale > 1 and latent is None:
            raise PipelineError(f"{self.info.label} cannot upscale {scale}× inside the render.")
        total = plan.steps + (latent.refine_steps if latent else 0)
        emit(Progress("denoise", 0, total))
        generator = torch.Generator(device="cpu").manual_seed(plan.seed)
        if latent is None:
            output = self._call(pipe, kwargs, plan, generator, emit, should_stop)
        else:
            # Diffusers' two-stage flow (pipeline.finish.latent): the base size to latents,
            # the upsampler doubles them, a short second pass at twice the size decodes.
            base = self._call(
                pipe, kwargs, plan, generator, emit, should_stop, output_type="latent", total=total
            ).frames
            emit(Progress("denoise", plan.steps, total, message="Upscaling 2× in latent space"))
            big = dataclasses.replace(
                plan, width=plan.width * scale, height=plan.height * scale,
                timesteps=tuple(latent.timesteps), sigmas=(), steps=latent.refine_steps,
            )
            upsampled = self._upsample(pipe, base, latent, big)
            if should_stop():
                raise Cancelled()
            second = self._second_pass_arguments(
                kwargs, big, photo, last if end_image is not None else None, upsampled, latent
            )
            placement.apply_vae_tiling(pipe, self._tiling, big.width, big.height)
            output = self._call(
                pipe, second, big, generator, emit, should_stop, offset=plan.steps, total=total
            )
        frames = to_uint8(output.frames[0])
        sound = getattr(output, "audio", None)
        width, height = plan.width * scale, plan.height * scale
        if frames.shape[1:3] != (height, width):
            raise PipelineError(
                f"The model returned {frames.shape[2]}×{frames.shape[1]} frames instead of "
                f"{width}×{height}."
            )
        if len(frames) > plan.num_frames:
            frames = frames[: plan.num_frames]
        emit(Progress("decode", 1, 1, preview=jpeg_preview(frames[0])))
        if sound is None or not request.audio:
            return frames
        return Rendered(frames, Soundtrack.of(sound[0], sample_rate(pipe)))

    def _call(
        self,
        pipe: Any,
        kwargs: dict[str, Any],
        plan: RenderPlan,
        generator: Any,
        emit: Emit,
        should_stop: ShouldStop,
        *,
        output_type: str = "np",
        offset: int = 0,
        total: int | None = None,
    ) -> Any:
        """One pipeline call with progress and cancellation per step. `offset` and `total`
        count its steps within a render of several calls (None: the call's own count)."""

        def on_step_end(
            pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            if should_stop():
                # Most loops honour _interrupt (SVD's does not); raising ends every family's
                # loop at once and skips the VAE decode of a clip nobody wants.
                pipeline._interrupt = True
                raise Cancelled()
            count = total or int(getattr(pipeline, "_num_timesteps", 0) or plan.steps)
            done = offset + step + 1
            emit(Progress("denoise", min(done, count), count))
            if done >= count:
                emit(Progress("decode", 0, 1, message="Decoding frames"))
            return callback_kwargs

        try:
            return pipe(
                **kwargs,
                generator=generator,
                output_type=output_type,
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        except Cancelled:
            self._after_abort(pipe)
            raise
        except Exception as exc:
            self._raise_out_of_memory(pipe, exc, plan)
            raise

    def _raise_out_of_memory(self, pipe: Any, exc: BaseException, plan: RenderPlan) -> None:
        """OutOfMemory (in the member's words) for a device that ran out; else return."""
        if isinstance(exc, PipelineError) or not is_out_of_memory(exc):
            return
        self._after_abort(pipe)
        on_gpu = self._device is not None and self._device.type == "cuda"
        where = "The GPU" if on_gpu else "The machine"
        raise OutOfMemory(
            f"{where} ran out of memory for {plan.width}×{plan.height}, {plan.num_frames} frames; "
            "try a shorter or smaller clip."
        ) from None

    def _upsample(self, pipe: Any, latents: Any, settings: LatentUpscale, big: RenderPlan) -> Any:
        """The base render's latents at twice the size (pipeline.finish.latent). The upsampler
        (126 M parameters) is loaded on first use and kept; under an offloading placement it
        waits on the CPU and visits the device only for its call, so the memory plan's
        resident weights stay as planned (the call runs between the two denoising passes,
        when no activations of theirs are alive)."""
        import torch

        if self._latent_upsampler is None:
            dtype = placement.choose_dtype(self.options, self.preset, self._device or torch.device("cpu"))
            self._latent_upsampler = load_latent_upsampler(upsampler_dir(settings), dtype=dtype)
            logger.info("Loaded the LTX latent upsampler (%s) for Upscale 2×", settings.repo_id)
        model = self._latent_upsampler
        device = latents.device
        model.to(device)
        try:
            return upsample_latents(pipe.vae, model, latents, settings)
        except Exception as exc:
            self._raise_out_of_memory(pipe, exc, big)
            raise
        finally:
            if self.offload != "none":
                model.to("cpu")

    def _second_pass_arguments(
        self,
        first: dict[str, Any],
        big: RenderPlan,
        photo: Image.Image,
        end_image: Image.Image | None,
        latents: Any,
        settings: LatentUpscale,
    ) -> dict[str, Any]:
        """The second pass's call: the first one's, at `big`'s size and schedule, conditioned
        on the photo (and end image) fitted to that size, starting from the upsampled
        `latents`; prompt embeddings encoded on the CPU are reused, not encoded again."""
        kwargs = self.call_arguments(
            big,
            fitted(photo, big.width, big.height).convert("RGB"),
            fitted(end_image, big.width, big.height).convert("RGB") if end_image is not None else None,
        )
        if self._text_encoder is not None:
            kwargs = {k: v for k, v in kwargs.items() if k not in ("prompt", "negative_prompt")}
            kwargs.update({k: v for k, v in first.items() if k.startswith(("prompt_", "negative_prompt_"))})
        kwargs.update(self.family.second_pass_kwargs(latents, settings))  # type: ignore[attr-defined]
        return supported_kwargs(self.pipe, kwargs)

    def close(self) -> None:
        """Drop the pipeline and give its GPU memory back."""
        self._drop()
        placement.free_device_memory()

    def _drop(self) -> None:
        """Let go of the pipeline (its hooks, Dynamo's code for it); freeing is the caller's."""
        if self._pipe is not None:
            try:
                self._pipe.remove_all_hooks()
            except Exception:  # hooks may not be installed; freeing must not fail
                pass
        self._pipe = None
        self._text_encoder = None
        self._latent_upsampler = None
        if self._compiled:
            # Dynamo's code cache is per process, not per model: the dropped blocks' guards and
            # graphs would stay, and the next load (the low-memory retry after an OOM, another
            # model) would pile its recompiles onto them up to the recompile limit.
            import torch

            self._compiled = False
            torch._dynamo.reset()

    # --- helpers ------------------------------------------------------------------------------

    def _after_abort(self, pipe: Any) -> None:
        """After an exception inside the call: put offloaded models back and free the cache."""
        try:
            pipe.maybe_free_model_hooks()
        except Exception:  # best effort; the next call re-hooks anyway
            pass
        placement.free_device_memory()

