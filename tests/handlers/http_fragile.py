"""An HTTP server whose environ hook fails on /boom: the child must lose only that connection."""

from http_load_apps import hello

from netserver import PreForkSimple, WSGIProtocol


class Fragile(WSGIProtocol, PreForkSimple):
    def wsgi_environ(self, environ, client):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("the environ hook failed on purpose")


if __name__ == "__main__":
    Fragile(app=hello).run()
