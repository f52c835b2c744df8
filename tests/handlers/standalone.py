"""A script that calls run() itself, as a user's program would."""

from netserver import Single


class Hello(Single):
    def process_request(self, client):
        client.wfile.write(b"hello from a script\n")


if __name__ == "__main__":
    Hello().run(port="127.0.0.1:0", timeout=5)
