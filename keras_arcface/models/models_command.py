"""``keras-arcface models``: the backbone presets with their parameters and MACs."""

import sys


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    parser.add_argument(
        "presets", nargs="*", help="presets to list (default: all, see `keras-arcface models`)"
    )
    parser.add_argument(
        "--input-size", type=int, default=112, help="square input size for the MACs (112)"
    )


def preset_rows(names, input_size=112, progress=False):
    """Returns one dict per preset: name, family, head, embedding_dim, params, macs ...

    Args:
        names: preset names.
        input_size: square input size at which MACs are counted. Default 112.
        progress: show a tqdm bar on stderr. Default False.

    Example:
        >>> preset_rows(["mbf"])[0]["params"]
        2059520
    """
    import keras
    from tqdm import tqdm

    from keras_arcface.models.flops import count_params_and_macs
    from keras_arcface.models.presets import PRESETS

    rows = []
    for name in tqdm(names, desc="building presets", disable=not progress, file=sys.stderr):
        preset = PRESETS[name]
        params, macs = count_params_and_macs(name, input_shape=(input_size, input_size, 3))
        keras.backend.clear_session()
        rows.append(
            {
                "name": name,
                "family": preset["family"],
                "head": preset["head"],
                "embedding_dim": preset["embedding_dim"],
                "params": params,
                "macs": macs,
                "reference_params": preset["reference_params"],
                "description": preset["description"],
            }
        )
    return rows


def format_table(rows, input_size=112):
    """Formats ``preset_rows`` as a markdown table."""
    lines = [
        f"| preset | family | head | embedding | params | GMACs @{input_size} | "
        "reference params | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference = row["reference_params"]
        reference = f"{reference / 1e6:.2f}M" if reference else "-"
        lines.append(
            f"| {row['name']} | {row['family']} | {row['head']} | {row['embedding_dim']} | "
            f"{row['params'] / 1e6:.2f}M | {row['macs'] / 1e9:.3f} | {reference} | "
            f"{row['description']} |"
        )
    return "\n".join(lines)


def main(args):
    """Runs the command; returns the exit status."""
    from keras_arcface.models.presets import PRESETS

    names = args.presets or list(PRESETS)
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        print(
            f"error: unknown preset {unknown[0]!r}; presets: {', '.join(PRESETS)}",
            file=sys.stderr,
        )
        return 2
    if args.input_size < 32:
        print(f"error: --input-size must be >= 32. Received: {args.input_size}", file=sys.stderr)
        return 2
    rows = preset_rows(names, args.input_size, progress=True)
    print(format_table(rows, args.input_size))
    return 0
