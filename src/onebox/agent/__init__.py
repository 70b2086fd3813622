"""The server side of onebox: a stdlib-only program shipped with each call and run as root.

The client packs this package, a request and any payload into one tar stream, pipes it
into `python3` on the server over a single SSH session, and reads JSON-line events back.
A deploy is one upload and one remote run, not dozens of SSH round trips.
Only relative imports and the standard library are allowed here: the server has nothing
else installed when `onebox setup` first runs.
"""
