"""Per-step statistics for the generalization estimate (docs/architecture.md §7), with the same definitions
as the TypeScript SDK's TrainingStats (packages/sdk/src/tfjs.ts). Gradients and weights are mappings name ->
array; the arithmetic uses only operators numpy arrays and torch tensors share, so the numpy path the tests
exercise is the code that runs on torch tensors too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

Grads = Mapping[str, Any]


@dataclass
class GradientStats:
    #: ḡ, the mean of the K micro-batch gradients (the batch gradient the optimizer applies), by name.
    grads: Dict[str, Any]
    #: ||ḡ||.
    grad_norm: float
    #: tr Σ̂ = b/(K−1) · Σ_k ||g_k − ḡ||², the trace of the per-sample gradient covariance.
    grad_variance: float


def _f64(x: Any) -> Any:
    if hasattr(x, "double") and callable(x.double):  # torch
        return x.double()
    import numpy as np

    return np.asarray(x, dtype=np.float64)


def sq_norm(tensors: Mapping[str, Any]) -> float:
    """Σ over tensors of the sum of squared elements, accumulated in float64."""
    total = 0.0
    for t in tensors.values():
        d = _f64(t)
        total += float((d * d).sum())
    return total


def dot(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """<a, b> over the tensors the two share by name (they must have the same names)."""
    if set(a) != set(b):
        raise ValueError(f"the two gradient maps name different tensors: {sorted(set(a) ^ set(b))}")
    return float(sum(float((_f64(a[n]) * _f64(b[n])).sum()) for n in a))


class TrainingStats:
    """Per-step statistics for `run.log()`:

    - gradNorm = ||ḡ||, the norm of the batch gradient ḡ (the mean of K micro-batch gradients g_k);
    - gradVariance = tr Σ̂ = b/(K−1) · Σ_k ||g_k − ḡ||², from K micro-batches of b rows each. Each g_k is a
      mean of b per-sample gradients, so its covariance is Σ/b and Σ_k ||g_k − ḡ||² has expectation
      (K−1)·tr Σ/b: the estimate is unbiased for i.i.d. rows. Its relative spread is about sqrt(2/(K−1)) at
      worst, and averages out over the steps the estimate sums;
    - updateNorm = ||Δw_t||, measured as the weights after the optimizer step minus those before (any
      optimizer);
    - gapIncrement = <∇F_val − ∇F_train, Δw_t>, both gradients at the weights before the update, ∇F_train
      the step's own batch gradient ḡ (the server subtracts the self-fit term that carries).

    - extra.preconditionedVariance = tr(P Σ̂) = b/(K−1) · Σ_k (g_k − ḡ)ᵀ P (g_k − ḡ) for an optimizer whose
      step is Δw = −P ḡ with a diagonal P (Adam: P = lr/(sqrt(v/(1−β2^t)) + ε)); the estimate's served
      indicator sums it, and without it understates Adam runs (docs/architecture.md §7).

    `gradient_stats`, `preconditioned_variance`, `update_norm` and `gap_increment` take mappings of numpy
    arrays or torch tensors; `torch_step` does a whole PyTorch training step with them."""

    def __init__(self, micro_batches: int = 4, gap_every: int = 10) -> None:
        if not isinstance(micro_batches, int) or micro_batches < 2:
            raise ValueError(f"micro_batches must be an integer >= 2, got {micro_batches!r}")
        self.k = micro_batches
        self.gap_every = gap_every

    def gradient_stats(self, micro_grads: Sequence[Grads], rows_per_micro_batch: int) -> GradientStats:
        """ḡ, ||ḡ|| and tr Σ̂ from the K micro-batch gradients (each the mean over its b rows)."""
        k = len(micro_grads)
        if k != self.k:
            raise ValueError(f"expected {self.k} micro-batch gradients, got {k}")
        names = list(micro_grads[0])
        mean: Dict[str, Any] = {}
        for n in names:
            total = _f64(micro_grads[0][n])
            for g in micro_grads[1:]:
                total = total + _f64(g[n])
            mean[n] = total / k
        spread = sum(sq_norm({n: _f64(g[n]) - mean[n] for n in names}) for g in micro_grads)
        return GradientStats(mean, sq_norm(mean) ** 0.5, rows_per_micro_batch / (k - 1) * spread)

    @staticmethod
    def preconditioned_variance(
        micro_grads: Sequence[Grads], mean: Grads, rows_per_micro_batch: int, preconditioner: Grads
    ) -> float:
        """tr(P Σ̂) = b/(K−1) · Σ_k Σ_i P_i (g_k,i − ḡ_i)² for a diagonal preconditioner P given by name
        (P = lr·1 gives lr·gradVariance)."""
        k = len(micro_grads)
        if k < 2:
            raise ValueError("tr(P Σ) needs at least two micro-batch gradients")
        total = 0.0
        for g in micro_grads:
            for n, p in preconditioner.items():
                d = _f64(g[n]) - _f64(mean[n])
                total += float((_f64(p) * d * d).sum())
        return rows_per_micro_batch / (k - 1) * total

    @staticmethod
    def torch_adam_preconditioner(optimizer: Any, params: Sequence[Tuple[str, Any]]) -> Optional[Dict[str, Any]]:
        """P = lr/(sqrt(exp_avg_sq/(1−β2^t)) + eps) by name from a torch Adam/AdamW optimizer's state after
        its step; None when the optimizer keeps no exp_avg_sq (not of this form)."""
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        out: Dict[str, Any] = {}
        for name, p in params:
            state = optimizer.state.get(p, {})
            group = group_of.get(id(p))
            if group is None or "exp_avg_sq" not in state or "betas" not in group:
                return None
            t = float(state["step"])
            beta2 = group["betas"][1]
            v_hat = _f64(state["exp_avg_sq"]) / (1 - beta2**t)
            out[name] = float(group["lr"]) / (v_hat.sqrt() + group["eps"])
        return out

    @staticmethod
    def update_norm(before: Grads, after: Grads) -> float:
        """||w_after − w_before|| over every tensor."""
        return sq_norm({n: _f64(after[n]) - _f64(before[n]) for n in before}) ** 0.5

    @staticmethod
    def gap_increment(val_grads: Grads, train_grads: Grads, update: Grads) -> float:
        """<∇F_val − ∇F_train, Δw>."""
        return dot({n: _f64(val_grads[n]) - _f64(train_grads[n]) for n in val_grads}, update)

    def torch_step(
        self,
        *,
        step: int,
        model: Any,
        loss_fn: Callable[[Any, Any], Any],
        xs: Any,
        ys: Any,
        optimizer: Any,
        lr: float,
        held_out: Optional[Tuple[Any, Any]] = None,
    ) -> Dict[str, Any]:
        """One PyTorch training step: K micro-batch gradients (one forward/backward each), ḡ set as the
        parameters' .grad, `optimizer.step()`, and the metric point for `run.log(**point)`: step, trainLoss,
        lr, batchSize, gradNorm, gradVariance, updateNorm and, every `gap_every` steps given a held-out
        batch `(xs, ys)`, gapIncrement. `loss_fn(model(xs), ys)` must be a mean over rows; the batch size
        must be a multiple of K."""
        rows = int(xs.shape[0])
        if rows % self.k:
            raise ValueError(f"the batch of {rows} rows does not split into {self.k} micro-batches")
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

        def grads_of(x: Any, y: Any) -> Tuple[Dict[str, Any], float]:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            return {n: p.grad.detach().clone() for n, p in params}, float(loss.detach())

        micro = [grads_of(x, y) for x, y in zip(xs.chunk(self.k), ys.chunk(self.k))]
        stats = self.gradient_stats([g for g, _ in micro], rows // self.k)
        val_grads = None
        if held_out is not None and self.gap_every and step % self.gap_every == 0:
            val_grads, _ = grads_of(*held_out)
        before = {n: p.detach().clone() for n, p in params}
        for n, p in params:
            p.grad = stats.grads[n].to(p.dtype)
        optimizer.step()
        delta = {n: p.detach() - before[n] for n, p in params}
        point: Dict[str, Any] = {
            "step": step,
            "trainLoss": sum(loss for _, loss in micro) / self.k,
            "lr": lr,
            "batchSize": rows,
            "gradNorm": stats.grad_norm,
            "gradVariance": stats.grad_variance,
            "updateNorm": sq_norm(delta) ** 0.5,
        }
        if val_grads is not None:
            point["gapIncrement"] = self.gap_increment(val_grads, stats.grads, delta)
        precond = self.torch_adam_preconditioner(optimizer, params)
        if precond is not None:
            pv = self.preconditioned_variance([g for g, _ in micro], stats.grads, rows // self.k, precond)
            point["extra"] = {"preconditionedVariance": pv}
        return point
