"""``python -m bench`` (from the repository root): see ``bench.runner``."""

from bench.runner import main

if __name__ == "__main__":
    main()
