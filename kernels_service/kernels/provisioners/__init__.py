"""jupyter_client provisioners of our own: the bubblewrap sandbox for local kernels
(`bubblewrap.py`, an entry point), a uid of its own for each local kernel (`confined.py`,
an entry point), and the one that gives a kept kernel's process back to jupyter_client
when the next service takes it up (`kept.py`)."""
