//! `email` over SMTP with lettre: STARTTLS, implicit TLS, or plain for a local relay; optional
//! authentication; templated subject and body.

use crate::{Notice, Notifier, NotifyError, Transport, required};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use pipewright_core::Params;
use serde_json::Value;

const DEFAULT_SUBJECT: &str = "$BUILD_PIPELINE_NAME/$BUILD_JOB_NAME #$BUILD_NUMBER $BUILD_STATUS";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// Plain, then upgraded with `STARTTLS` (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same host or network only.
    None,
}

/// `email`: one message per notice, to every address in `to`.
#[derive(Debug)]
pub(crate) struct Email {
    host: String,
    port: u16,
    security: Security,
    /// The username and password (kept out of `Debug`).
    credentials: Option<Secret>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    body: Option<String>,
    transport: Transport,
}

/// SMTP credentials whose `Debug` shows only the username.
struct Secret(String, String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, ***)", self.0)
    }
}

fn mailbox(param: &str, s: &str) -> Result<Mailbox, NotifyError> {
    s.trim().parse().map_err(|e| {
        NotifyError::config("email", format!("`{param}`: `{s}` is not an address: {e}"))
    })
}

impl Email {
    pub(crate) fn new(params: &Params, transport: Transport) -> Result<Self, NotifyError> {
        let host = required("email", params, "host")?;
        let security = match params.get_str("security").as_deref() {
            None | Some("starttls") => Security::StartTls,
            Some("tls") => Security::Tls,
            Some("none") => Security::None,
            Some(other) => {
                return Err(NotifyError::config(
                    "email",
                    format!("`security` is `starttls`, `tls` or `none`, not `{other}`"),
                ));
            }
        };
        let port = match params.get_str("port") {
            Some(p) => p
                .parse()
                .map_err(|_| NotifyError::config("email", format!("`port` `{p}` is not a port")))?,
            None => match security {
                Security::StartTls => 587,
                Security::Tls => 465,
                Security::None => 25,
            },
        };
        let credentials = match (params.get_str("username"), params.get_str("password")) {
            (Some(u), Some(p)) => Some(Secret(u, p)),
            (None, None) => None,
            _ => {
                return Err(NotifyError::config(
                    "email",
                    "set both `username` and `password`, or neither",
                ));
            }
        };
        let from = mailbox("from", &required("email", params, "from")?)?;
        let to = match params.get("to") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| match v {
                    Value::String(s) => mailbox("to", s),
                    other => mailbox("to", &other.to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => required("email", params, "to")?
                .split(',')
                .map(|s| mailbox("to", s))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if to.is_empty() {
            return Err(NotifyError::config("email", "`to` names no address"));
        }
        Ok(Self {
            host,
            port,
            security,
            credentials,
            from,
            to,
            subject: params
                .get_str("subject")
                .unwrap_or_else(|| DEFAULT_SUBJECT.into()),
            body: params.get_str("body"),
            transport,
        })
    }

    fn mailer(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
        let smtp_err = |e: lettre::transport::smtp::Error| NotifyError::Smtp {
            host: self.host.clone(),
            attempts: 0,
            message: e.to_string(),
        };
        let builder = match self.security {
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host)
                .map_err(smtp_err)?,
            Security::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(smtp_err)?
            }
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
        };
        let mut builder = builder
            .port(self.port)
            .timeout(Some(self.transport.timeout));
        if let Some(Secret(u, p)) = &self.credentials {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(builder.build())
    }

    /// The message for `n`, its subject and body templated and masked.
    fn message(&self, n: &Notice) -> Result<Message, NotifyError> {
        let subject = (n.mask)(&n.expand(&self.subject));
        let body = match &self.body {
            Some(t) => n.expand(t),
            None => crate::chat::text(n),
        };
        let body = (n.mask)(&body);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject.replace(['\r', '\n'], " "))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(body)
            .map_err(|e| NotifyError::config("email", format!("cannot build the message: {e}")))
    }
}

#[async_trait::async_trait]
impl Notifier for Email {
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let message = self.message(notice)?;
        let mailer = self.mailer()?;
        let retry = self.transport.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match mailer.send(message.clone()).await {
                Ok(_) => {
                    tracing::debug!(host = %self.host, attempt, "email sent");
                    return Ok(());
                }
                Err(e) => {
                    // Permanent refusals (a bad address, a wrong password) are not retried.
                    let again = !e.is_permanent() && attempt < retry.attempts;
                    let err = NotifyError::Smtp {
                        host: self.host.clone(),
                        attempts: attempt,
                        message: e.to_string(),
                    };
                    if !again {
                        return Err(err);
                    }
                    let wait = retry.delay(attempt);
                    tracing::info!(host = %self.host, attempt, error = %err, ?wait, "email failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, Value)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.insert(*k, v.clone());
        }
        p
    }

    fn transport() -> Transport {
        Transport::new(std::time::Duration::from_secs(1), crate::Retry::default()).unwrap()
    }

    #[test]
    fn ports_follow_the_security_and_both_credentials_are_needed() {
        let base = [
            ("host", Value::from("smtp.example")),
            ("from", Value::from("ci@example.com")),
            ("to", Value::from(vec!["a@example.com", "b@example.com"])),
        ];
        let e = Email::new(&params(&base), transport()).unwrap();
        assert_eq!(
            (e.port, e.security, e.to.len()),
            (587, Security::StartTls, 2)
        );
        let mut tls = base.to_vec();
        tls.push(("security", Value::from("tls")));
        assert_eq!(Email::new(&params(&tls), transport()).unwrap().port, 465);
        let mut half = base.to_vec();
        half.push(("username", Value::from("ci")));
        let err = Email::new(&params(&half), transport()).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        let mut bad = base.to_vec();
        bad.push(("security", Value::from("ssl")));
        assert!(Email::new(&params(&bad), transport()).is_err());
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let p = params(&[
            ("host", Value::from("smtp.example")),
            ("from", Value::from("ci@example.com")),
            ("to", Value::from("a@example.com")),
            ("username", Value::from("ci")),
            ("password", Value::from("hunter2-very-secret")),
        ]);
        let e = Email::new(&p, transport()).unwrap();
        let shown = format!("{e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ci"), "{shown}");
    }
}
