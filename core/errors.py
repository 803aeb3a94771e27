"""Errors a user can act on. Each message is one sentence that names the thing at fault."""


class InputError(ValueError):
    """Bad arguments or unreadable input: the command line exits with code 2 on these."""


class ImageDecodeError(InputError):
    """An image file could not be read safely."""


class DatasetError(InputError):
    """A folder or zip is not a usable data set."""


class BundleError(InputError):
    """A saved model bundle is missing, altered or unreadable."""


class Terminated(BaseException):
    """SIGTERM (a service manager or ``kill`` stopping a command), raised by the command line where the process is,
    so that every atomic writer on the way out removes its partial file and a training's run says it was stopped.
    A BaseException, like KeyboardInterrupt: no ``except Exception`` may take it for an error and carry on."""
