"""Dereverberation: undo the convolution with a room impulse response, known or blind."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import istft, stft
from diffmusic.dsp.rooms import (
    DECAY_RANGE,
    band_energies,
    band_fft_size,
    blind_decay_times,
    energy_decay,
    late_kernel,
    octave_bands,
    simulated_room,
)
from diffmusic.names import BLIND_ROOM
from diffmusic.operators.base import Operator

RT60_RANGE = (0.05, 10.0)
"""RT60s in seconds the synthetic room response accepts."""
DEFAULT_RT60 = 0.5
"""RT60 in seconds of the protocol's synthetic room response."""
ROOM_RANGE = (0.2, 3.0)
"""RT60s in seconds of the rooms :meth:`Dereverberation.degrade` simulates."""
BLIND_RIR_SECONDS = 1.5
"""Length of the blind model's response."""
TAIL_DB_AT_1S = 5.8
"""Energy of the reverberant tail against the direct path, in dB, of a band whose RT60 is 1 s;
the blind model starts at this plus ``10 log10(RT60)`` (diffuse reverberant energy grows with
the decay time; the rooms of the tuning split)."""
REFINE_STEPS = 3
"""Adam steps on the room per call of :meth:`Dereverberation.refine` (one per sampling step)."""
REFINE_RATES = (0.03, 0.3)
"""Adam learning rates of the log RT60s and of the tail levels in dB."""
REFINE_ANCHOR = 1.0
"""Weight of the squared distance of the refined room from the one read from the recording
(log RT60s, tail levels in units of 10 dB) against the fit of the band energies: the fit alone,
against the blurred estimates of the early steps, drifts (benchmarks/RESULTS.md)."""
MIN_BLIND_SECONDS = 1.0
"""Least recording in seconds from which the room is estimated."""
GAIN_FLOOR = 0.3
"""Least gain (-10 dB) of the late-reverberation suppression."""
OVER_SUBTRACTION_DB = 4.5
"""Gain in dB on the modelled late power in the suppression (over-subtraction; with
:data:`GAIN_FLOOR`, chosen for LSD and SI-SDR of the suppression on the tuning split's rooms)."""
WPE_SETTINGS = {"taps": 10, "delay": 3, "iterations": 3}
"""Weighted prediction error (``nara-wpe``) settings of the baseline."""


def synthetic_rir(sample_rate: int, rt60: float = DEFAULT_RT60, length: float = 0.8,
                  seed: int = 0) -> Tensor:
    """Unit direct path plus a unit-energy exponentially decaying Gaussian-noise tail.

    Args:
        sample_rate: Sample rate in Hz.
        rt60: Time in seconds for the tail to decay by 60 dB.
        length: Length of the response in seconds.
        seed: Seed of the noise.

    Returns:
        Impulse response, shape ``(round(length * sample_rate),)``.
    """
    n = round(length * sample_rate)
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    tail = torch.randn(n, generator=generator, dtype=torch.float64)
    tail = tail * torch.exp(-3 * math.log(10) * t / rt60)
    tail[0] = 0
    rir = tail / tail.norm()
    rir[0] = 1.0
    return rir.float()


def _fft_size(n: int) -> int:
    return 1 << (n - 1).bit_length()


class Dereverberation(Operator):
    """``A(x) = (h * x)[:N]``: convolution with a room impulse response, truncated.

    The response is known (a user's file, or the protocol's synthetic one of a given RT60) or
    blind (``rt60="blind"``): then it is modelled as in BUDDy (Moliner, Lemercier, Gerkmann and
    Välimäki 2024) by a unit direct path plus, per octave band, Gaussian noise decaying
    exponentially, with a decay time and a tail level per band and per signal. The decay times
    are first read from the recording (:meth:`fitted`), then both are estimated jointly with
    the signal during sampling (:meth:`refine`).

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        rir: Impulse response samples (a user's RIR file); overrides the synthetic one.
        rt60: RT60 in seconds of the synthetic response, or ``"blind"``.
        room: RT60 in seconds of the shoebox room :meth:`degrade` simulates
            (:func:`~diffmusic.dsp.rooms.simulated_room`); the restoration does not know it,
            so the operator is blind.
        band_rt60: The blind model's decay times in seconds, one list per signal (``None``:
            read from the measurement, :meth:`fitted`).
        band_tail_db: Its tail-to-direct energy per band in dB, one list per signal.
        rir_length: Length in seconds of the synthetic response.
        seed: Seed of the synthetic response, of the blind model's noise and of the room.
        wiener_nsr: Noise-to-signal ratio of the Wiener baseline of a known response.
        refine_iterations: Conjugate-gradient iterations of :meth:`project` with a known
            response (300 converge to a measurement residual about 1e-5 of the start's on
            music; 30 left 3e-3, and a projected DiffMusic output worse than the Wiener
            baseline).
        refine_weight: Weight of ``||x - x_hat||^2`` against ``||h * x - y||^2`` in
            :meth:`project` with a known response.
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "dereverberation"
    options: ClassVar[tuple[str, ...]] = ("rir", "rt60", "room", "seed")
    baseline_names: ClassVar[tuple[str, ...]] = ("reverberant", "wpe", "wiener")
    default_baseline: ClassVar[str] = "wiener"

    def __init__(self, sample_rate: int, num_samples: int, rir: Sequence[float] | None = None,
                 rt60: float | str = DEFAULT_RT60, room: float | None = None,
                 band_rt60: Sequence[Sequence[float]] | None = None,
                 band_tail_db: Sequence[Sequence[float]] | None = None,
                 rir_length: float = 0.8, seed: int = 0, wiener_nsr: float = 1e-2,
                 refine_iterations: int = 300, refine_weight: float = 1e-6, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        self.blind = rt60 == BLIND_ROOM or room is not None or band_rt60 is not None
        if self.blind and rir is not None:
            raise ValueError("a response file describes a known room; a blind restoration "
                             "(or a simulated room) takes none")
        if room is not None and not ROOM_RANGE[0] <= room <= ROOM_RANGE[1]:
            raise ValueError(f"a simulated room's RT60 must be between {ROOM_RANGE[0]:g} and "
                             f"{ROOM_RANGE[1]:g} s, got {room:g}")
        if not self.blind and not (isinstance(rt60, (int, float))
                                   and RT60_RANGE[0] <= rt60 <= RT60_RANGE[1]):
            raise ValueError(f"rt60 must be between {RT60_RANGE[0]:g} and {RT60_RANGE[1]:g} s "
                             f"(rooms to large churches) or {BLIND_ROOM!r}, got {rt60}")
        self.rt60 = BLIND_ROOM if self.blind else float(rt60)
        self.room, self.rir_length, self.seed = room, rir_length, seed
        self.user_rir = rir is not None
        self.wiener_nsr = wiener_nsr
        self.refine_iterations, self.refine_weight = refine_iterations, refine_weight
        self._spectra: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        if self.blind:
            self._init_blind(band_rt60, band_tail_db)
            return
        h = (torch.as_tensor(rir, dtype=torch.float32) if rir is not None
             else synthetic_rir(sample_rate, float(rt60), rir_length, seed))
        if h.dim() != 1 or h.numel() == 0 or not torch.isfinite(h).all():
            raise ValueError("the impulse response must be a non-empty finite mono signal")
        if not bool((h != 0).any()):
            raise ValueError("the impulse response is silent (every sample is zero)")
        self.register_buffer("rir", h, persistent=False)
        self.n_fft = _fft_size(self.num_samples + h.numel())

    def _init_blind(self, band_rt60: Sequence[Sequence[float]] | None,
                    band_tail_db: Sequence[Sequence[float]] | None) -> None:
        """The blind model: its band noises ``(bands, L)`` and, once known, its parameters."""
        length = round(BLIND_RIR_SECONDS * self.sample_rate)
        self.centres, index = octave_bands(self.sample_rate, length)
        white = torch.randn(length, generator=torch.Generator().manual_seed(self.seed),
                            dtype=torch.float64)
        spectrum = torch.fft.rfft(white)
        masks = F.one_hot(index, len(self.centres)).T.double()  # (bands, F)
        noise = torch.fft.irfft(spectrum * masks, length)
        noise[:, 0] = 0  # the direct path is the model's own
        # unit-variance noise keeps each band's share of the power: tail energy / direct
        # energy in a band is then gain ** 2 * sum(envelope ** 2)
        noise = noise / noise.pow(2).mean(-1, keepdim=True).sqrt() * masks.mean(-1, True).sqrt()
        self.register_buffer("band_noise", noise.float(), persistent=False)
        self.n_fft = _fft_size(self.num_samples + length)
        self.band_rt60: Tensor | None = None
        self.band_tail_db: Tensor | None = None
        if band_rt60 is None and band_tail_db is not None:
            raise ValueError("tail levels without decay times: give band_rt60 too")
        if band_rt60 is not None:
            rt60 = torch.as_tensor(band_rt60, dtype=torch.float32).reshape(-1, len(self.centres))
            tail = (TAIL_DB_AT_1S + 10 * torch.log10(rt60) if band_tail_db is None else
                    torch.as_tensor(band_tail_db, dtype=torch.float32).reshape(rt60.shape))
            self.band_rt60, self.band_tail_db = rt60.clamp(*DECAY_RANGE), tail
            self._anchor = (self.band_rt60.log(), tail)

    def _blind_parameters(self) -> tuple[Tensor, Tensor]:
        if self.band_rt60 is None or self.band_tail_db is None:
            raise ValueError("the room is not known yet: call fitted(y) or give band_rt60")
        return self.band_rt60, self.band_tail_db

    def model_rir(self, rt60: Tensor, tail_db: Tensor) -> Tensor:
        """The blind model's response for decay times ``rt60`` and tail levels ``tail_db`` (dB),
        both ``(B, bands)``: ``(B, L)``, differentiable in both."""
        noise = self.band_noise
        rt60, tail_db = rt60.to(noise.device), tail_db.to(noise.device)
        t = torch.arange(noise.shape[-1], dtype=rt60.dtype, device=noise.device) / self.sample_rate
        envelope = torch.exp(-3 * math.log(10) * t / rt60[..., None])  # (B, bands, L)
        gain = (10 ** (tail_db / 10) / envelope.pow(2).sum(-1)).sqrt()
        h = torch.einsum("bk,bkl->bl", gain, envelope * noise.to(rt60))
        return h + F.one_hot(torch.zeros(1, dtype=torch.long), h.shape[-1]).to(h)

    def response(self) -> Tensor:
        """The impulse response the operator convolves with: ``(L,)`` known, ``(B, L)`` blind."""
        return self.model_rir(*self._blind_parameters()) if self.blind else self.rir

    def _spectrum(self, like: Tensor) -> Tensor:
        """``rfft`` of the response in ``like``'s dtype and device; a known one's computed once
        (the projection's conjugate gradient needs it twice per iteration)."""
        if self.blind:
            return torch.fft.rfft(self.response().to(like), self.n_fft)
        h = self.rir.to(like.dtype)
        key = (h.dtype, h.device)
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(h, self.n_fft)
        return self._spectra[key]

    def measurement_shape(self) -> tuple[int, ...]:
        """The reverberant audio: one signal's samples (known before a blind room is)."""
        return (self.num_samples,)

    def forward(self, x: Tensor) -> Tensor:
        full = torch.fft.irfft(torch.fft.rfft(x, self.n_fft) * self._spectrum(x), self.n_fft)
        return full[..., : self.num_samples]

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Convolution with the simulated room (``room``), else with the known response.

        Raises:
            ValueError: A blind operator without a room to simulate.
        """
        if self.room is None:
            if self.blind:
                raise ValueError("a blind room degrades nothing: give a room to simulate "
                                 "(--room SEC), an RT60 (--rt60 SEC) or a response (--rir)")
            return super().degrade(x, generator)
        h = simulated_room(self.sample_rate, self.room, self.seed)
        return self._with(room=None, rt60=DEFAULT_RT60, rir=h.tolist(),
                          band_rt60=None).degrade(x, generator)

    def fitted(self, y: Tensor, rate: int | None = None) -> Dereverberation:
        """A blind operator with the decay times of each signal of ``y`` ``(B, N)`` read from
        it (:func:`~diffmusic.dsp.rooms.blind_decay_times`, at ``y``'s own ``rate``), unless
        known; the tail levels follow from them (:data:`TAIL_DB_AT_1S`). A blind operator comes
        back as a new one, so that each restoration refines its own room (:meth:`refine`).

        Raises:
            ValueError: Less than :data:`MIN_BLIND_SECONDS` of audio.
        """
        if not self.blind:
            return self
        if self.band_rt60 is not None:  # a copy: refine() changes the room in place
            return self._with()
        rate = rate or self.sample_rate
        if y.shape[-1] < MIN_BLIND_SECONDS * rate:
            raise ValueError(f"the room cannot be estimated from less than "
                             f"{MIN_BLIND_SECONDS:g} s of audio (give --rt60 or --rir)")
        rt60 = blind_decay_times(y.reshape(-1, y.shape[-1]).float().cpu(), rate)
        return self._with(band_rt60=rt60[:, : len(self.centres)].tolist())

    def refine(self, x_hat: Tensor, y: Tensor) -> None:
        """A blind room's decay times and tail levels after :data:`REFINE_STEPS` Adam steps
        that fit, the signal ``x_hat`` ``(B, N)`` held fixed, ``y``'s energy per octave band
        and STFT frame by ``x_hat``'s spread over the frames by the room
        (:func:`~diffmusic.dsp.rooms.late_kernel`; squared error of the logarithms less its
        mean over the frames of each band: a restoration whose spectral balance is off does not
        pass for a room), anchored to the room the operator was built with
        (:data:`REFINE_ANCHOR`). Energies do not depend on the model noise's phase, so the fit
        is smooth."""
        if not self.blind:
            return
        rt60, tail = self._blind_parameters()
        anchor_rt60, anchor_tail = (a.to(x_hat) for a in self._anchor)
        signal, hop = band_energies(x_hat.reshape(-1, x_hat.shape[-1]), self.sample_rate)
        target, _ = band_energies(y.reshape(-1, y.shape[-1]).to(x_hat), self.sample_rate)
        signal, target = signal[:, : rt60.shape[-1]], target[:, : rt60.shape[-1]]
        floor = target.mean() * 1e-6
        frames = min(signal.shape[-1], round(BLIND_RIR_SECONDS / hop))
        log_rt60 = rt60.log().to(x_hat).expand(signal.shape[0], -1).clone().requires_grad_(True)
        tail = tail.to(x_hat).expand(signal.shape[0], -1).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([{"params": [log_rt60], "lr": REFINE_RATES[0]},
                                      {"params": [tail], "lr": REFINE_RATES[1]}])
        padded = F.pad(signal, (frames - 1, 0)).flatten(0, 1)[None]  # causal
        with torch.enable_grad():
            for _ in range(REFINE_STEPS):
                optimiser.zero_grad()
                kernel = late_kernel(log_rt60.exp(), tail, hop, frames).flatten(0, 1)
                spread = F.conv1d(padded, kernel.flip(-1)[:, None], groups=kernel.shape[0])
                spread = spread[0].reshape(target.shape)
                error = torch.log(spread + floor) - torch.log(target + floor)
                fit = (error - error.mean(-1, keepdim=True)).pow(2).mean()
                drift = ((log_rt60 - anchor_rt60).pow(2).mean()
                         + ((tail - anchor_tail) / 10).pow(2).mean())
                (fit + REFINE_ANCHOR * drift).backward()
                optimiser.step()
        self.band_rt60 = log_rt60.detach().exp().clamp(*DECAY_RANGE)
        self.band_tail_db = tail.detach()

    def adjoint(self, r: Tensor) -> Tensor:
        """``A^T r``: correlation with the impulse response, shape ``(..., N)``."""
        spec = torch.fft.rfft(r, self.n_fft) * self._spectrum(r).conj()
        return torch.fft.irfft(spec, self.n_fft)[..., : self.num_samples]

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Known response: conjugate gradient on ``||A x - y||^2 + lam ||x - x_hat||^2``
        started at ``x_hat``. Blind: the suppression of the late reverberation of the room
        refined with the signal (:meth:`suppressed`, :meth:`refine`). The model's noise tail
        does not have the room's phase, so ``y`` cannot be deconvolved; and blending the
        restoration's magnitudes into the gains cost LSD and SI-SDR on the tuning split with the
        embedded prior (benchmarks/RESULTS.md), so the restoration enters through its room."""
        if self.blind:
            return self.suppressed(y)
        lam = self.refine_weight

        def normal(v: Tensor) -> Tensor:
            return self.adjoint(self(v)) + lam * v

        x = x_hat.clone()
        r = self.adjoint(y) + lam * x_hat - normal(x)
        p, rs = r.clone(), r.pow(2).sum(-1, keepdim=True)
        for _ in range(self.refine_iterations):
            ap = normal(p)
            alpha = rs / (p * ap).sum(-1, keepdim=True).clamp_min(1e-20)
            x, r = x + alpha * p, r - alpha * ap
            rs_new = r.pow(2).sum(-1, keepdim=True)
            p, rs = r + (rs_new / rs.clamp_min(1e-20)) * p, rs_new
        return x


    def suppressed(self, y: Tensor) -> Tensor:
        """``y`` ``(B, N)`` through Wiener gains against the blind model's late reverberation
        (Lebart, Boucher and Denbigh 2001): per STFT frame the late power is the earlier
        frames' clean power decayed by each band's RT60 and scaled by its tail level (and
        :data:`OVER_SUBTRACTION_DB`), and the clean power is what is left of ``y``'s (at least
        :data:`GAIN_FLOOR` squared of it)."""
        rt60, tail = (p.to(y) for p in self._blind_parameters())  # (B, bands)
        n_fft = band_fft_size(self.sample_rate)
        spec = stft(y, n_fft, n_fft // 4)
        power = spec.abs().pow(2)
        _, index = octave_bands(self.sample_rate, n_fft)
        decay = energy_decay(rt60[:, index.to(y.device)], n_fft / 4 / self.sample_rate)
        feed = 10 ** ((tail[:, index.to(y.device)] + OVER_SUBTRACTION_DB) / 10) * (1 - decay)
        late, lates, cleans = torch.zeros_like(power[..., 0]), [], []
        for frame in power.unbind(-1):
            clean = torch.maximum(frame - late, GAIN_FLOOR**2 * frame)
            lates.append(late)
            cleans.append(clean)
            late = decay * (late + feed * clean)
        late, clean = torch.stack(lates, -1), torch.stack(cleans, -1)
        gain = (clean / (clean + late).clamp_min(1e-20)).clamp(GAIN_FLOOR, 1)
        return istft(spec * gain, y.shape[-1], n_fft, n_fft // 4)

    def reverberant(self, y: Tensor) -> Tensor:
        """The reverberant recording itself."""
        return y

    def wpe(self, y: Tensor) -> Tensor:
        """Weighted prediction error dereverberation (Nakatani et al. 2010; ``nara-wpe``), each
        signal on its own, blind to the room (:data:`WPE_SETTINGS`)."""
        from nara_wpe.utils import istft as wpe_istft
        from nara_wpe.utils import stft as wpe_stft
        from nara_wpe.wpe import wpe

        n_fft = band_fft_size(self.sample_rate)
        out = []
        for signal in y.reshape(-1, y.shape[-1]).double().cpu().numpy():
            spec = wpe_stft(signal[None], size=n_fft, shift=n_fft // 4).transpose(2, 0, 1)
            spec = wpe(spec, **WPE_SETTINGS).transpose(1, 2, 0)
            out.append(wpe_istft(spec, size=n_fft, shift=n_fft // 4)[0][: y.shape[-1]])
        return torch.from_numpy(np.stack(out)).to(y).reshape(y.shape)

    def wiener(self, y: Tensor) -> Tensor:
        """Known response: Wiener deconvolution ``conj(H) Y / (|H|^2 + nsr)``. Blind: the Wiener
        suppression of the model's late reverberation (:meth:`suppressed`)."""
        if self.blind:
            return self.suppressed(y)
        h = self._spectrum(y)
        spec = torch.fft.rfft(y, self.n_fft) * h.conj() / (h.abs().pow(2) + self.wiener_nsr)
        return torch.fft.irfft(spec, self.n_fft)[..., : self.num_samples]

    def estimates(self) -> dict:
        """A blind room's RT60 and tail-to-direct energy (dB) per octave band, keyed by the
        band's centre in Hz, one value per signal."""
        if not self.blind or self.band_rt60 is None or self.band_tail_db is None:
            return {}
        return {"rt60_s": {f"{c:g}": self.band_rt60[:, k].tolist()
                           for k, c in enumerate(self.centres)},
                "tail_db": {f"{c:g}": self.band_tail_db[:, k].tolist()
                            for k, c in enumerate(self.centres)}}

    def _spec_args(self) -> dict:
        args = {"rt60": self.rt60, "room": self.room, "rir_length": self.rir_length,
                "seed": self.seed, "wiener_nsr": self.wiener_nsr,
                "refine_iterations": self.refine_iterations, "refine_weight": self.refine_weight}
        if self.blind:
            known = self.band_rt60 is not None and self.band_tail_db is not None
            args["band_rt60"] = self.band_rt60.tolist() if known else None
            args["band_tail_db"] = self.band_tail_db.tolist() if known else None
        if self.user_rir:
            args["rir"] = self.rir.tolist()
        return args
