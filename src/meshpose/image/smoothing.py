"""Temporal smoothing of per-frame estimates: the One Euro filter (Casiez, Roussel and Vogel,
CHI 2012), an exponential low-pass filter whose cut-off frequency rises with the speed of the
signal: strong smoothing when still (jitter goes), little when moving fast (little lag).

For one sample ``x_t`` at ``fps`` frames per second, with ``a(fc) = 1 / (1 + fps / (2 pi fc))``:

    dx_t   = a(d_cutoff) * (x_t - x̂_{t-1}) * fps + (1 - a(d_cutoff)) * dx_{t-1}
    fc     = min_cutoff + beta * |dx_t|
    x̂_t    = a(fc) * x_t + (1 - a(fc)) * x̂_{t-1}

element-wise; the first sample passes unchanged. Rotations are filtered as matrices, then each
is replaced by its nearest rotation (:func:`roma.special_procrustes`).
"""
from __future__ import annotations

import math

import numpy as np
import roma
import torch

from meshpose.metrics import acceleration_error

#: Defaults chosen on the synthetic video of ``benchmarks/bench_image.py`` (30 fps).
MIN_CUTOFF = 1.0  # Hz
BETA = 0.5  # Hz per (unit / s) of the filtered value
D_CUTOFF = 1.0  # Hz


def _alpha(cutoff, fps: float):
    return 1.0 / (1.0 + fps / (2.0 * math.pi * cutoff))


class OneEuroFilter:
    """A One Euro filter over arrays of any fixed shape, one sample per call.

    Args:
        fps: samples per second.
        min_cutoff: cut-off frequency when the signal is still, Hz (lower: smoother, more lag).
        beta: how fast the cut-off rises with speed, Hz per (unit / s) (higher: less lag).
        d_cutoff: cut-off of the speed estimate, Hz.
    """

    def __init__(self, fps: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA,
                 d_cutoff: float = D_CUTOFF):
        if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need fps, min_cutoff, d_cutoff > 0 and beta >= 0; got {fps}, "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.fps, self.min_cutoff, self.beta, self.d_cutoff = float(fps), min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes unchanged."""
        self._value = None
        self._speed = None

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._value is None:
            self._value, self._speed = x.copy(), np.zeros_like(x)
            return x.copy()
        a_d = _alpha(self.d_cutoff, self.fps)
        self._speed = a_d * (x - self._value) * self.fps + (1.0 - a_d) * self._speed
        a = _alpha(self.min_cutoff + self.beta * np.abs(self._speed), self.fps)
        self._value = a * x + (1.0 - a) * self._value
        return self._value.copy()


def one_euro(sequence, fps: float, **settings) -> np.ndarray:
    """Filter a (T, ...) sequence along its first axis; ``settings`` as :class:`OneEuroFilter`."""
    sequence = np.asarray(sequence, dtype=np.float64)
    step = OneEuroFilter(fps, **settings)
    return np.stack([step(x) for x in sequence]) if len(sequence) else sequence.copy()


def one_euro_rotations(rotations, fps: float, **settings) -> np.ndarray:
    """Filter a (T, ..., 3, 3) sequence of rotation matrices; each result is a rotation."""
    filtered = torch.from_numpy(one_euro(rotations, fps, **settings))
    return roma.special_procrustes(filtered).numpy()


def jitter(joints, fps: float) -> float:
    """Mean magnitude of the joints' acceleration, ``|x_{t+1} - 2 x_t + x_{t-1}| * fps^2``,
    over joints and frames: (T, J, 3) in metres -> metres / s^2 (0 for fewer than 3 frames).
    The acceleration error against a body standing still."""
    joints = np.asarray(joints, dtype=np.float64)
    if len(joints) < 3:
        return 0.0
    return float(acceleration_error(joints, np.zeros_like(joints), fps=fps))
