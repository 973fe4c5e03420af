"""The dashboard (``craft-callbacks ui``) and the report (``craft-callbacks report``).

:mod:`.server` serves the pages in ``static/`` and the JSON API of :mod:`.api`
over a read-only store; :mod:`.report` writes the compare page, its scripts,
styles and data into one HTML file; :mod:`.downsample` makes long series small
enough to draw while keeping their shape. The standard library is all they
need: the ``ui`` extra adds nothing to install.
"""
