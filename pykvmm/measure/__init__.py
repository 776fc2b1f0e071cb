"""Exit-count measurement: every guest under every coalescing policy, with the baselines.

``python -m pykvmm.measure [--guests ...] [--policies ...] [--extents ...] [-r R] [--out DIR]``
runs each guest in-process (one Machine per run, pykvmm's firmware first, serial output to a
temporary file) under ``off``, each engine policy at each extent, and KVM's own coalesced IO ring
(``kvm-ring``), R times each; then QEMU with KVM on the same boot sectors when
``qemu-system-x86_64`` is installed.  It writes ``results.json``, ``table.md`` and, with
matplotlib (``pip install pykvmm[plot]``), two plots.

This is the top layer: it may import everything, and nothing in pykvmm imports it.

Modules: ``options`` (parsing the user's choices), ``runner`` (one in-process run),
``summary`` (aggregating runs), ``table`` (Markdown), ``plot`` (matplotlib, optional),
``qemu`` (the QEMU baseline), ``progress`` (the stderr progress bar), ``cli`` (the command).
"""
