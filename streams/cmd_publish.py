"""placeholder until the runtime lands."""

def register(sub):
    pass
