"""Placement of tasks on nodes: pure functions over a picture of the nodes and their load (no I/O).

The reconciler (warren.reconciler) builds the picture from the replicated state and turns the
answers into commands; this room only decides, and explains every refusal in words a user reads in
`service ps`.
"""
