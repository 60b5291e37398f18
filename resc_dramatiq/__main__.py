"""``python -m resc_dramatiq`` runs the command line."""

from resc_dramatiq.cli import main

main(prog_name="resc-dramatiq")
