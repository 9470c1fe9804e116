"""What every webhook verifier repeats, in one place: signatures and tokens compared in constant
time over every secret of a rotation list, replay windows for signed timestamps, and a memory of
tokens already used (for providers whose signature does not cover the body).

Each provider's package keeps what is its own: which bytes are signed and how the header reads.
"""
