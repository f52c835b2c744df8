import sys

from netserver import PreForkSimple


class CrashOnBoot(PreForkSimple):
    def child_init_hook(self):
        sys.exit(7)
