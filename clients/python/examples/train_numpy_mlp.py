"""Trains a small MLP in plain numpy and sends its metrics and checkpoints to trajgate through the Python
client: the training loop the README's "From Python" section shows, made runnable.

    python3 examples/train_numpy_mlp.py --url http://localhost:8080 [--run numpy-mlp-1] [--steps 300]

The task: 20 features, 4 classes given by a random teacher network, 2,000 training rows with 10% of the
labels flipped (so the model can overfit) and 1,000 held-out rows. A 20-64-4 ReLU MLP is trained with SGD,
batches of 64 split into K=4 micro-batches for TrainingStats; the learning rate drops tenfold at 2/3 of
the run. Every step logs trainLoss, lr, batchSize, gradNorm, gradVariance and updateNorm; every 10th step
gapIncrement; every 20th valLoss and a checkpoint. At the end it prints the kept checkpoints with their
retention classes, the trajectory's phases, the estimate, and what log() cost per call."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import trajgate  # noqa: E402

D, H, C = 20, 64, 4
N_TRAIN, N_VAL = 2000, 1000


def make_data(seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((D, C))
    x = rng.standard_normal((N_TRAIN + N_VAL, D)).astype(np.float32)
    y = np.argmax(x @ teacher + 0.5 * rng.standard_normal((N_TRAIN + N_VAL, C)), axis=1)
    flip = rng.random(N_TRAIN) < 0.1
    y[:N_TRAIN][flip] = rng.integers(0, C, flip.sum())
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def init(seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": (rng.standard_normal((D, H)) * np.sqrt(2 / D)).astype(np.float32),
        "fc1.bias": np.zeros(H, np.float32),
        "fc2.weight": (rng.standard_normal((H, C)) * np.sqrt(1 / H)).astype(np.float32),
        "fc2.bias": np.zeros(C, np.float32),
    }


def loss_and_grads(p: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> Tuple[float, Dict[str, np.ndarray]]:
    """Mean softmax cross-entropy over the rows, and its gradient."""
    pre = x @ p["fc1.weight"] + p["fc1.bias"]
    h = np.maximum(pre, 0)
    logits = h @ p["fc2.weight"] + p["fc2.bias"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
    d_logits = probs
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    d_h = (d_logits @ p["fc2.weight"].T) * (pre > 0)
    grads = {
        "fc1.weight": x.T @ d_h,
        "fc1.bias": d_h.sum(axis=0),
        "fc2.weight": h.T @ d_logits,
        "fc2.bias": d_logits.sum(axis=0),
    }
    return loss, grads


def train(client: trajgate.Client, run_id: str, steps: int = 300, seed: int = 0) -> Dict[str, Any]:
    xs, ys, xv, yv = make_data(seed)
    params = init(seed + 1)
    stats = trajgate.TrainingStats(micro_batches=4)
    rng = np.random.default_rng(seed + 2)
    batch = 64
    log_seconds = 0.0
    started = time.perf_counter()
    with client.run(run_id, planned_steps=steps, train_size=N_TRAIN, tags={"example": "numpy-mlp"}) as run:
        for step in range(1, steps + 1):
            lr = 0.1 if step <= 2 * steps // 3 else 0.01
            idx = rng.choice(N_TRAIN, batch, replace=False)
            micro = [loss_and_grads(params, xs[part], ys[part]) for part in np.split(idx, stats.k)]
            g = stats.gradient_stats([grads for _, grads in micro], batch // stats.k)
            point: Dict[str, Any] = {
                "trainLoss": float(np.mean([loss for loss, _ in micro])),
                "lr": lr,
                "batchSize": batch,
                "gradNorm": g.grad_norm,
                "gradVariance": g.grad_variance,
            }
            val_grads = None
            if step % 10 == 0:
                held = rng.choice(N_VAL, batch, replace=False)
                _, val_grads = loss_and_grads(params, xv[held], yv[held])
            before = {name: w.copy() for name, w in params.items()}
            for name in params:
                params[name] -= (lr * g.grads[name]).astype(np.float32)  # in place: checkpoint() copied its own
            point["updateNorm"] = stats.update_norm(before, params)
            if val_grads is not None:
                delta = {name: params[name] - before[name] for name in params}
                point["gapIncrement"] = stats.gap_increment(val_grads, g.grads, delta)
            if step % 20 == 0:
                point["valLoss"], _ = loss_and_grads(params, xv, yv)
            t0 = time.perf_counter()
            run.log(step, **point)
            log_seconds += time.perf_counter() - t0
            if step % 20 == 0:
                run.checkpoint(step, params)
    train_seconds = time.perf_counter() - started
    final_train, _ = loss_and_grads(params, xs, ys)
    final_val, _ = loss_and_grads(params, xv, yv)
    return {
        "steps": steps,
        "train_seconds": train_seconds,
        "log_seconds": log_seconds,
        "final_train_loss": final_train,
        "final_val_loss": final_val,
        "checkpoints": client.list_checkpoints(run_id),
        "trajectory": client.get_trajectory(run_id),
        "estimate": client.get_estimate(run_id),
    }


def log_overhead(client: trajgate.Client, run_id: str, calls: int = 20_000) -> float:
    """Seconds per run.log() call, over `calls` calls in a tight loop (batching and sending in the background)."""
    with client.run(run_id) as run:
        t0 = time.perf_counter()
        for step in range(calls):
            run.log(step, trainLoss=1.0, lr=0.1, gradNorm=0.5)
        per_call = (time.perf_counter() - t0) / calls
    return per_call


def report(result: Dict[str, Any], per_call: float) -> str:
    lines = [
        f"trained {result['steps']} steps in {result['train_seconds']:.2f} s; final train loss "
        f"{result['final_train_loss']:.4f}, val loss {result['final_val_loss']:.4f}",
        f"log() inside the loop: {result['log_seconds'] * 1e6 / result['steps']:.1f} us per call "
        f"({result['log_seconds'] * 1e3:.1f} ms of {result['train_seconds'] * 1e3:.0f} ms)",
        f"log() in a tight loop: {per_call * 1e6:.2f} us per call",
    ]
    kept = [c for c in result["checkpoints"] if c["status"] == "kept"]
    lines.append(f"checkpoints: {len(result['checkpoints'])} uploaded, {len(kept)} kept")
    for c in kept:
        reason = c["reasons"][0] if c["reasons"] else ""
        lines.append(f"  step {c['step']:>4}  {','.join(c['classes']):<22} {reason}")
    phases = sorted({item["phase"] for item in result["trajectory"]["items"]})
    lines.append(f"trajectory: {len(result['trajectory']['items'])} checkpoints, phases {', '.join(phases)}")
    e = result["estimate"]
    lines.append(
        f"estimate: step {e['step']}, served {e['served']['name']} = {e['served']['value']}, calibrated "
        f"{e['calibrated']}, gap {e['gap']}, measuredGap {e['measuredGap']}, missing {e['missing']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TRAJGATE_URL"))
    parser.add_argument("--run", default="numpy-mlp-1")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    client = trajgate.Client(args.url)
    result = train(client, args.run, args.steps)
    print(report(result, log_overhead(client, args.run + "-log-overhead")))


if __name__ == "__main__":
    main()
