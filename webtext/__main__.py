"""``python -m webtext`` runs the CLI, as the ``webtext`` command does."""

from webtext.pipeline.cli import main

if __name__ == "__main__":
    main()
