"""(placeholder) info."""


def add_args(p):
    pass


def main(args):
    raise NotImplementedError("info")
