"""Composition roots: the daemons that wire the layers below them together and run them.

A package of its own, above the API, so that the import order CLI -> daemons -> API -> manager holds:
the manager never imports the API it is served by (docs/decisions.md, "Clean house").
"""
