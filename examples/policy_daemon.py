"""A Postfix SMTP access policy daemon (the protocol of Postfix's SMTPD_POLICY_README).

Postfix sends "name=value" lines ending with an empty line and expects one
"action=..." line followed by an empty line; the connection is reused.

    python examples/policy_daemon.py                       # 127.0.0.1:10023, 4 children
    python examples/policy_daemon.py --conf_file policy.conf --blocked_domain spam.test
    python examples/policy_daemon.py --help                # every option, this one's included
    # main.cf: smtpd_recipient_restrictions = ..., check_policy_service inet:127.0.0.1:10023

Its defaults live in default_values(), the lowest source, so a conf file or
the command line can change them; keywords given to run() would outrank the
conf file.
"""

from netserver import Option, PreForkSimple
from netserver.options import text


class Policy(PreForkSimple):
    declared_options = (
        Option("blocked_domain", text, "example.invalid",
               "Reject mail from senders in this domain. Default example.invalid.", metavar="DOMAIN"),
    )

    def default_values(self):
        return {"port": "127.0.0.1:10023", "max_servers": 4}

    def process_request(self, client):
        attributes = {}
        for line in client.rfile:
            line = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if line:
                name, _, value = line.partition("=")
                attributes[name] = value
                continue
            client.wfile.write(self.decide(attributes).encode() + b"\n\n")
            attributes = {}

    def decide(self, attributes):
        sender = attributes.get("sender", "")
        if sender.lower().endswith("@" + self.options.blocked_domain):
            return "action=REJECT sender domain not accepted"
        return "action=DUNNO"


if __name__ == "__main__":
    Policy().run()
