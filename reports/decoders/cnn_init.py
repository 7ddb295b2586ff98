"""Why the CNN decoder trained poorly under the protocol (issue 21): vanilla on short-Yelp at size `study`, seed 0,
the CNN under the protocol's init (every decoder weight U(+-0.01)) against variants, and the LSTM for reference.

    python reports/decoders/cnn_init.py --data-dir ../shared/data [--size study] [--variants cnn,cnn-pytorch-init]

Variants: `lstm` and `cnn` (the protocol: SGD lr 1, decoder U(+-0.01)); `cnn-pytorch-init` (the CNN's convolutions
and its linear maps in and out of the blocks at PyTorch's default init, U(+-1/sqrt(fan_in)); the shared embedding and
output layer as the protocol); `cnn-adam` (the protocol's init, Adam lr 1e-3 as Yang et al.); `cnn-sgd-0.1` (the
protocol but SGD lr 0.1); `transformer`, `transformer-adam`, `transformer-sgd-0.1` the same for the Transformer.
Prints one line each, with the share of the CNN's last ReLU units that are never active on 1,000 validation
sentences.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from collapse_bench import model as model_mod
from collapse_bench.cell import CellSpec, build_trainer
from collapse_bench.decoders import CNNDecoder
from collapse_bench.evaluate import score

VARIANTS = {
    "lstm": ({"model": {"decoder": "lstm"}}, False),
    "cnn": ({"model": {"decoder": "cnn"}}, False),
    "cnn-pytorch-init": ({"model": {"decoder": "cnn"}}, True),
    "cnn-adam": ({"model": {"decoder": "cnn"}, "train": {"optimizer": "adam", "lr": 1e-3}}, False),
    "cnn-sgd-0.1": ({"model": {"decoder": "cnn"}, "train": {"lr": 0.1}}, False),
    "transformer": ({"model": {"decoder": "transformer"}}, False),
    "transformer-adam": ({"model": {"decoder": "transformer"}, "train": {"optimizer": "adam", "lr": 1e-3}}, False),
    "transformer-sgd-0.1": ({"model": {"decoder": "transformer"}, "train": {"lr": 0.1}}, False),
}


def patch_init(pytorch_core: bool) -> None:
    """With pytorch_core, the CNN's core layers are re-drawn at PyTorch's default init after the protocol's."""
    original = getattr(model_mod.TextVAE, "_original_reset", model_mod.TextVAE.reset_parameters)
    model_mod.TextVAE._original_reset = original

    def reset(self, module=None):
        original(self, module)
        if pytorch_core and module is None and isinstance(self.decoder, CNNDecoder):
            for m in self.decoder.modules():
                if isinstance(m, (nn.Conv1d, nn.Linear)) and m is not self.decoder.out and m is not self.decoder.skip:
                    m.reset_parameters()
    model_mod.TextVAE.reset_parameters = reset


@torch.no_grad()
def dead_units(model, corpus, sentences: int = 1000) -> float | None:
    """The share of the CNN's last ReLU units (the block stack's output channels) that are 0 at every position of
    the first `sentences` validation sentences; None for another decoder."""
    dec = model.decoder
    if not isinstance(dec, CNNDecoder):
        return None
    model.eval()
    alive = torch.zeros(dec.proj.in_features, dtype=torch.bool)
    for s in corpus.valid.sentences[:sentences]:
        tokens = torch.tensor([[1, *s.tolist()]])
        z = torch.zeros(1, dec.nz)
        x = dec.blocks(dec.inp(torch.cat([dec.embed(tokens), z[:, None].expand(-1, tokens.shape[1], -1)], -1))
                       .transpose(1, 2))
        alive |= (x > 0).any(-1)[0]
    return 1 - alive.float().mean().item()


def run(name: str, data_dir: str, size: str, seed: int) -> str:
    overrides, pytorch_core = VARIANTS[name]
    patch_init(pytorch_core)
    spec = CellSpec("vanilla", "short-yelp", size, seed, overrides=overrides, data_dir=data_dir)
    trainer = build_trainer(spec)
    timing = trainer.fit()
    m = score(trainer.method, trainer.model, trainer.corpus, spec.size_config().eval, trainer.device, seed)
    dead = dead_units(trainer.model, trainer.corpus)
    return (f"{name:18s} NLL {m['nll']:.2f}  KL {m['kl']:.2f}  MI {m['mi']:.2f}  AU {m['au']}  PPL {m['ppl']:.1f}  "
            f"best valid {timing['best_valid']:.2f}  train {timing['train_seconds']:.0f} s"
            + ("" if dead is None else f"  dead ReLU units {dead:.0%}"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--size", default="study")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    for name in args.variants.split(","):
        print(run(name, args.data_dir, args.size, args.seed), flush=True)


if __name__ == "__main__":
    main()
