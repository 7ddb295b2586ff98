"""Training loop of He et al. 2019: separate encoder/decoder optimisers, gradient clipping, lr halving
with reload of the best checkpoint, early stopping, model selection on the validation ELBO."""
from __future__ import annotations

import contextlib
import copy
import random
import time
from typing import Iterable

import numpy as np
import torch

from . import evaluate as ev
from .config import SizeConfig, TrainConfig
from .context import TrainCallback, TrainContext
from .data import Corpus, Split, bucket_batches
from .method import Method
from .model import TextVAE, precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def subsample(split: Split, n: int, seed: int) -> Split:
    if len(split) <= n:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
    return Split([split.sentences[i] for i in idx], None if split.labels is None else split.labels[idx])


WARM_UP_BATCHES = 64   # at most this many untimed steps, one per sentence length, before a cell is timed (Trainer._warm_up)


class Stopwatch:
    """Wall-clock and this thread's CPU time since creation. With one torch thread all of a step's work runs on the
    calling thread, so its CPU time leaves out the waits for a core that other processes hold."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.thread_time() - self.cpu


def make_optimizer(params: list, tc: TrainConfig, lr: float, kind: str | None = None) -> torch.optim.Optimizer | None:
    """SGD without momentum (the protocol) or Adam with β1 = `train.adam_beta1` (kind: `train.optimizer` unless
    given); None without parameters."""
    if not params:
        return None
    if (kind or tc.optimizer) == "adam":     # fused: one kernel for every tensor (3x faster on a CPU than the loop)
        return torch.optim.Adam(params, lr=lr, betas=(tc.adam_beta1, 0.999), fused=True)
    return torch.optim.SGD(params, lr=lr)


class LrHalving:
    """He et al.'s text.py rule: after `decay_patience` epochs whose validation score is worse than the reference
    value (only from `decay_from_epoch` on), halve the lr and reload the best checkpoint ("decay"); the
    `max_decays`-th time, stop ("stop"). The reference value is the last epoch's score that was not worse."""

    def __init__(self, tc: TrainConfig):
        self.patience, self.from_epoch, self.max_decays = tc.decay_patience, tc.decay_from_epoch, tc.max_decays
        self.ref, self.bad_epochs, self.decays = float("inf"), 0, 0

    def after_epoch(self, epoch: int, score: float) -> str:
        """'continue', 'decay' or 'stop'."""
        if not score > self.ref:          # (a NaN score is not worse, as in the reference code)
            self.bad_epochs, self.ref = 0, score
            return "continue"
        self.bad_epochs += 1
        if self.bad_epochs < self.patience or epoch < self.from_epoch:
            return "continue"
        self.decays += 1
        self.bad_epochs, self.ref = 0, score
        return "stop" if self.decays >= self.max_decays else "decay"


class Trainer:
    def __init__(self, method: Method, cfg: SizeConfig, corpus: Corpus, *, seed: int = 0, device: str = "cpu",
                 callbacks: Iterable[TrainCallback] = ()):
        self.method, self.cfg, self.corpus, self.seed = method, cfg, corpus, seed
        self.device = torch.device(device)
        self.callbacks = list(callbacks)
        method.check_config(cfg)
        seed_everything(seed)
        self.model = method.build_model(cfg.model, len(corpus.vocab)).to(self.device)
        self.lr = cfg.train.lr
        self._make_optimizers()
        self.train_batches = [b for b in bucket_batches(corpus.train, cfg.train.batch_size, seed=seed)
                              if b.size >= method.min_batch_size]
        self.valid_batches = bucket_batches(corpus.valid, cfg.eval.batch_size)
        self.curve_split = subsample(corpus.valid, cfg.train.curve_sentences, seed)
        self.curves: list[dict] = []
        self.total_steps = cfg.train.epochs * max(1, len(corpus.train) // cfg.train.batch_size)
        # The reference code anneals over N/batch_size iterations per epoch, not over the (more numerous)
        # length buckets; keep that so "10 epochs of annealing" means what it meant there.
        self.ctx = TrainContext(model=self.model, cfg=cfg, device=self.device, rng=np.random.default_rng(seed),
                                train_batches=self.train_batches, valid=corpus.valid,
                                steps_per_epoch=max(1.0, len(corpus.train) / cfg.train.batch_size),
                                optimize=self.optimize, evaluating=self.evaluating, fit_other=self.fit_other)

    # The context is the one record of where training is; the Trainer reads it (and the step parity test,
    # which drives Method.train_step with the Trainer itself, sets step through it).
    @property
    def step(self) -> int:
        return self.ctx.step

    @step.setter
    def step(self, value: int) -> None:
        self.ctx.step = value

    @property
    def steps_per_epoch(self) -> float:
        return self.ctx.steps_per_epoch

    @property
    def rng(self) -> np.random.Generator:
        return self.ctx.rng

    def _make_optimizers(self) -> None:
        tc = self.cfg.train
        self.enc_opt = make_optimizer(self.model.encoder_parameters(), tc, self.lr)
        if self.cfg.decoder_optimizer() == "adam":     # its lr halves with the encoder's (self.lr / tc.lr)
            self.dec_opt = make_optimizer(self.model.decoder_parameters(), tc, tc.dec_lr * self.lr / tc.lr, "adam")
        else:
            self.dec_opt = make_optimizer(self.model.decoder_parameters(), tc, self.lr)

        self._params = [p for o in self.optimizers for g in o.param_groups for p in g["params"]]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.enc_opt, self.dec_opt) if o is not None]

    def optimize(self, loss: torch.Tensor, which: str = "both") -> None:
        """Zero grads, backpropagate, clip the gradient norm of all parameters jointly at cfg.train.clip, step the
        chosen optimiser(s). Joint, as the reference code's clip_grad_norm_(vae.parameters(), 5), also when only
        the encoder steps (Agg-VAE's inner loop): clipping each part alone would change their balance."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        opts = {"both": self.optimizers, "encoder": [self.enc_opt], "decoder": [self.dec_opt]}[which]
        torch.nn.utils.clip_grad_norm_(self._params, self.cfg.train.clip)
        for o in opts:
            o.step()

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (no dropout, BN on running statistics) at the eval precision, without gradients; train mode
        after."""
        self.model.eval()
        try:
            with torch.no_grad(), precision(self.device, self.cfg.eval.precision):
                yield
        finally:
            self.model.train()

    def fit_other(self, method: Method) -> tuple[TextVAE, dict]:
        """Train `method` on this run's corpus, configuration and seed (a fresh Trainer reseeds the global RNGs
        with the seed, so the result is exactly that method's cell); return its model and timing."""
        other = Trainer(method, self.cfg, self.corpus, seed=self.seed, device=str(self.device))
        return other.model, other.fit()

    def validate(self) -> dict[str, float]:
        """Validation ELBO with KL weight 1 (1 sample) plus MI/AU on a fixed subset, in eval mode."""
        with self.evaluating():
            return self._validate()

    def _validate(self) -> dict[str, float]:
        rec, kl = ev.elbo_terms(self.method, self.model, self.corpus.valid, self.cfg.eval.batch_size, self.device)
        out = {"valid_loss": float((rec + kl).mean()), "valid_recon": float(rec.mean()), "valid_kl": float(kl.mean())}
        if self.model.has_latent:
            out.update(self._latent_stats())
        else:
            out.update(valid_mi=0.0, valid_au=0)
        return out

    def latent_point(self) -> dict:
        """MI, AU and per-dimension KL on the curve subset, in eval mode (a point inside an epoch)."""
        if not self.model.has_latent:
            return {}
        with self.evaluating():
            return self._latent_stats()

    def _latent_stats(self) -> dict:
        post = ev.encode(self.method, self.model, self.curve_split, self.cfg.eval.batch_size, self.device)
        stats = ev.latent_stats(post, self.cfg.eval.au_threshold)
        out = {"valid_mi": stats.mi, "valid_au": stats.au}
        if hasattr(post, "kl_per_dim"):   # which units die, and when (Gaussian families)
            out["valid_kl_dims"] = [round(float(v), 5) for v in post.kl_per_dim().mean(0)]
        return out

    def fit(self) -> dict:
        """Train; leave the best-validation model loaded (or the last, train.select). Returns timing."""
        tc = self.cfg.train
        key = "valid_recon" if self.method.select_on == "recon" else "valid_loss"
        self.model.train()
        self._warm_up()
        clock = Stopwatch()
        self.method.before_training(self.ctx)   # e.g. AE pretraining: counted as training time
        setup_time, setup_cpu = clock.read()
        best, best_state, halving, train_time, train_cpu = float("inf"), None, LrHalving(tc), 0.0, 0.0
        for epoch in range(1, tc.epochs + 1):
            self.ctx.epoch = epoch
            (seconds, cpu), point = self._train_epoch(epoch)
            train_time, train_cpu = train_time + seconds, train_cpu + cpu
            self._end_epoch(epoch, point)
            if point[key] < best:
                best, best_state = point[key], copy.deepcopy(self.model.state_dict())
            action = halving.after_epoch(epoch, point[key])
            if action == "stop":
                break
            if action == "decay":
                self.lr *= tc.lr_decay
                self.model.load_state_dict(best_state)
                self._make_optimizers()
        if best_state is not None and tc.select == "best":
            self.model.load_state_dict(best_state)
        self.model.eval()
        return {"train_seconds": setup_time + train_time, "before_training_seconds": setup_time,
                "train_cpu_seconds": setup_cpu + train_cpu, "wall_seconds": clock.read()[0], "steps": self.step,
                "seconds_per_step": train_time / max(self.step, 1),
                "epochs": sum(not c.get("partial") for c in self.curves), "decays": halving.decays,
                "best_valid": best}

    def _warm_up(self) -> None:
        """Untimed steps (the method's loss, backward, clipping, an optimiser step; one batch per sentence length)
        and one validation pass on a throwaway copy of the model, the random state restored after. A process's
        first training run is otherwise slower in every step than the same run repeated (measured at `smoke`: ~30%;
        a validation pass beforehand removes most of it, untimed steps alone do not), and vanilla, the baseline, is
        the first cell of its worker: cheap methods showed time ratios below 1 (0.48x at smoke)."""
        if not self.train_batches:
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            model = copy.deepcopy(self.model)
            params = list(model.parameters())
            opt = make_optimizer(params, self.cfg.train, self.lr)
            one_per_length = {b.tokens.shape[1]: b for b in reversed(self.train_batches)}
            for batch in list(one_per_length.values())[:WARM_UP_BATCHES]:
                with precision(self.device, self.cfg.train.precision):
                    loss = self.method.loss(model, batch.to(self.device), 1.0).total
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, self.cfg.train.clip)
                opt.step()
            model.eval()
            with torch.no_grad(), precision(self.device, self.cfg.eval.precision):
                ev.elbo_terms(self.method, model, self.corpus.valid, self.cfg.eval.batch_size, self.device)

    def _train_epoch(self, epoch: int) -> tuple[tuple[float, float], dict]:
        """One pass over the batches in a seeded order; returns its training seconds and thread CPU seconds (curve
        points inside the epoch excluded) and the epoch's sums as the start of its curve point."""
        tc = self.cfg.train
        clock = Stopwatch()
        sums, n, paused = {}, 0, (0.0, 0.0)
        order = self.rng.permutation(len(self.train_batches))
        marks = {len(order) * k // tc.curve_points_per_epoch for k in range(1, tc.curve_points_per_epoch)}
        for pos, i in enumerate(order, 1):
            batch = self.train_batches[i].to(self.device)
            with precision(self.device, tc.precision):
                logs = self.method.train_step(self.ctx, batch)
            self.step += 1
            n += 1
            for k in ("loss", "kl", "kl_weight"):
                sums[k] = sums.get(k, 0.0) + logs.get(k, 0.0)
            for cb in self.callbacks:
                cb.on_step(self.step, self.total_steps)
            if pos in marks:     # a point inside the epoch: latent statistics only, not counted as training
                point_clock = Stopwatch()
                self._curve_point(epoch - 1 + pos / len(order), logs.get("kl_weight", 0.0))
                paused = tuple(p + t for p, t in zip(paused, point_clock.read()))
        seconds = tuple(t - p for t, p in zip(clock.read(), paused))
        point = {"epoch": epoch, "step": self.step, "lr": self.lr,
                 "kl_weight": sums.get("kl_weight", 0.0) / max(n, 1),
                 "train_loss": sums.get("loss", 0.0) / max(n, 1),
                 "train_kl": sums.get("kl", 0.0) / max(n, 1)}
        return seconds, point

    def _curve_point(self, epoch: float, kl_weight: float) -> None:
        point = {"epoch": epoch, "step": self.step, "partial": True, "kl_weight": kl_weight, **self.latent_point()}
        self.curves.append(point)
        for cb in self.callbacks:
            cb.on_curve_point(point)

    def _end_epoch(self, epoch: int, point: dict) -> None:
        """Validate, record the epoch's curve point, let the method (then the callbacks) see it."""
        for cb in self.callbacks:
            cb.before_validation(epoch)
        point.update(self.validate())
        self.curves.append(point)
        self.method.on_epoch_end(self.ctx, epoch, point)
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, point)
