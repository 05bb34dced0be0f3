"""An SMTP server for the email tests: aiosmtpd on 127.0.0.1:PORT that requires AUTH (user
`ci`, password `smtp-pass-123`) over plain SMTP and appends each mail as a JSON line to OUT."""
import json
import logging
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

PORT, OUT = int(sys.argv[1]), sys.argv[2]
# Plain-text AUTH is what the test wants; keep aiosmtpd's warning about it out of the output.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "authenticated": bool(session.authenticated),
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"ci" and auth_data.password == b"smtp-pass-123")
    return AuthResult(success=ok, handled=False)


controller = Controller(Handler(), hostname="127.0.0.1", port=PORT, authenticator=authenticate,
                        auth_require_tls=False, auth_required=True)
controller.start()
print("ready", flush=True)
# Runs until the test kills it (or closes stdin).
sys.stdin.read()
controller.stop()
