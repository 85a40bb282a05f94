"""``python -m sparsetrain``: the same as the ``sparsetrain`` console script (also under torchrun)."""

from sparsetrain.cli import main

if __name__ == "__main__":
    main()
