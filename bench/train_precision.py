"""Where bf16 autocast speeds up training on this CPU: for each setup what `train.bf16_probe` times before a run (a
training step of what trains in each strategy: forward, backward, Adam; fp32 against bf16 autocast, both
channels_last as `train.module` runs them, alternated), --rounds times; then each block of the backbone alone
(forward and backward at 224 px).

    .venv/bin/python bench/train_precision.py [--backbones efficientnet_lite0 efficientnet_b0] [--sizes 224 96]

What trains: scratch (every layer, BatchNorm in training mode, from the photo), finetune (the last block group and
the head, from the frozen trunk's output, as the loader hands it over) and finetune with the last three blocks. Random
weights and inputs: the speed of a step does not depend on them. Prints two tables and writes
bench/train_precision.json with the CPU named.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from machine import cpu, describe

REPO = Path(__file__).resolve().parents[1]
SETUPS = {"scratch": None, "finetune, last block group": 1, "finetune, last 3 blocks": 3}
"""What trains: None for everything, else the last K blocks (`--unfreeze-blocks K`) and the head behind a frozen trunk."""


def classifier_for(backbone: str, blocks: int | None):
    """A classifier frozen as a setup trains it: nothing frozen (scratch), or all but the last `blocks` blocks."""
    from transferlab.models.classifier import build_classifier
    from transferlab.models.freezing import freeze, unfreeze, unfreeze_last_blocks

    model, _ = build_classifier(backbone, num_classes=10, pretrained=False)
    if blocks is None:
        unfreeze(model)
    else:
        freeze(model.backbone)
        unfreeze_last_blocks(model.backbone, blocks)
    return model


def median_seconds(step, steps: int) -> float:
    """The median seconds of `steps` calls of `step`, after one warm-up call."""
    seconds = []
    for call in range(steps + 1):
        started = time.perf_counter()
        step()
        if call:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def alternated(seconds_in, rounds: int) -> tuple[float, float, dict[str, list[float]]]:
    """`seconds_in(bf16)` for fp32 then bf16, `rounds` times: the median of each, and every round's figure."""
    times = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for name in times:
            times[name].append(seconds_in(name == "bf16"))
    return statistics.median(times["fp32"]), statistics.median(times["bf16"]), times


def measure(backbone: str, setup: str, size: int, batch: int, rounds: int) -> dict:
    """`train.bf16_probe`'s own timing of a setup, `rounds` times (each alternates fp32 and bf16 steps)."""
    from transferlab.train.bf16_probe import time_training_steps

    blocks = SETUPS[setup]
    model = classifier_for(backbone, blocks)
    times = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        fp32, bf16 = time_training_steps(model, size, batch, whole_model=blocks is None)
        times["fp32"].append(fp32)
        times["bf16"].append(bf16)
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {
        "backbone": backbone, "trains": setup, "image_size": size, "batch": batch,
        "fp32_images_per_s": batch / fp32, "bf16_images_per_s": batch / bf16, "bf16_speedup": fp32 / bf16,
        "rounds_s": times,
    }


def backbone_parts(backbone) -> list[tuple[str, torch.nn.Module]]:
    """The stem, each block and the head convolution, in order."""
    parts = [("stem", torch.nn.Sequential(backbone.conv_stem, backbone.bn1))]
    parts += [(f"blocks.{i}.{j}", block) for i, stage in enumerate(backbone.blocks) for j, block in enumerate(stage)]
    return parts + [("conv_head", torch.nn.Sequential(backbone.conv_head, backbone.bn2))]


def depthwise_kernel(part: torch.nn.Module) -> int | None:
    kernels = [max(m.kernel_size) for m in part.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    return max(kernels) if kernels else None


def per_block(backbone_name: str, size: int, batch: int, steps: int, rounds: int) -> list[dict]:
    """Forward and backward (to the weights and the input) of each part of the backbone alone, on its real input."""
    from transferlab.models.classifier import build_classifier

    model, _ = build_classifier(backbone_name, num_classes=10, pretrained=False)
    backbone = model.backbone.eval()
    features = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    rows = []
    for name, part in backbone_parts(backbone):
        part.to(memory_format=torch.channels_last)

        def forward_backward(bf16: bool) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                output = part(features.detach().requires_grad_(True))
            output.float().sum().backward()

        fp32, bf16, _ = alternated(lambda bf16: median_seconds(lambda: forward_backward(bf16), steps), rounds)
        rows.append({"part": name, "input": list(features.shape[1:]), "depthwise_kernel": depthwise_kernel(part),
                     "fp32_ms": 1000 * fp32, "bf16_ms": 1000 * bf16, "bf16_speedup": fp32 / bf16})
        with torch.no_grad():
            features = part(features)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "efficientnet_b0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 96])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed calls per round of each block alone")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks-of", default="efficientnet_lite0", help="the backbone timed block by block ('' skips)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "train_precision.json")
    args = parser.parse_args()
    machine = cpu()
    rows = [
        measure(backbone, setup, size, args.batch, args.rounds)
        for backbone in args.backbones for size in args.sizes for setup in SETUPS
    ]
    blocks = per_block(args.blocks_of, 224, args.batch, args.steps, args.rounds) if args.blocks_of else []
    print(f"CPU: {describe(machine)}; torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print("| backbone | what trains | px | fp32 img/s | bf16 img/s | bf16 speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['backbone']} | {row['trains']} | {row['image_size']} | {row['fp32_images_per_s']:.1f} | "
              f"{row['bf16_images_per_s']:.1f} | {row['bf16_speedup']:.2f}x |")
    if blocks:
        print(f"\n{args.blocks_of}, each part alone, forward + backward, 224 px, batch {args.batch}:\n")
        print("| part | input (C, H, W) | depthwise kernel | fp32 ms | bf16 ms | bf16 speed-up |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for row in blocks:
            print(f"| {row['part']} | {tuple(row['input'])} | {row['depthwise_kernel'] or '-'} | {row['fp32_ms']:.1f} | "
                  f"{row['bf16_ms']:.1f} | {row['bf16_speedup']:.2f}x |")
    args.out.write_text(json.dumps({"cpu": machine, "torch": torch.__version__, "rows": rows, "blocks": blocks}, indent=2) + "\n")


if __name__ == "__main__":
    main()
