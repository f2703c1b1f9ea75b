"""(placeholder) simulate."""


def add_args(p):
    pass


def main(args):
    raise NotImplementedError("simulate")
