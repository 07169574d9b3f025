"""placeholder"""
class ExportError(RuntimeError):
    pass
