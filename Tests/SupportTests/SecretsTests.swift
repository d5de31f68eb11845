import Testing
import GenetikaSupport

@Suite("Secrets kept out of output")
struct SecretsTests {
    @Test("a URL's password is masked wherever the URL stands; URLs without one are left alone")
    func urlPasswords() {
        #expect(Secrets.maskURLPasswords("postgres://genetika:s3cret@db:5432/genetika") == "postgres://genetika:***@db:5432/genetika")
        #expect(Secrets.maskURLPasswords("connect to postgres://u:p%40ss@h/db failed; retry postgres://v:w@k")
                == "connect to postgres://u:***@h/db failed; retry postgres://v:***@k")
        // The password may hold '@' and ':'; the host is after the last '@'.
        #expect(Secrets.maskURLPasswords("postgres://u:a:b@c@host/db") == "postgres://u:***@host/db")
        #expect(Secrets.maskURLPasswords("postgres://host/db and http://h:80/x") == "postgres://host/db and http://h:80/x")
        #expect(Secrets.maskURLPasswords("no url here") == "no url here")
    }

    @Test("registered secrets are replaced, longer ones first; one-character values are not registered")
    func registered() {
        Secrets.register("tok-en-123")
        Secrets.register("tok-en")
        Secrets.register("x")
        #expect(Secrets.redact("sasl password tok-en-123, prefix tok-en, letter x") == "sasl password ***, prefix ***, letter x")
        #expect(Secrets.isSecretProperty("sasl.password") && Secrets.isSecretProperty("sasl.oauthbearer.client.secret"))
        #expect(!Secrets.isSecretProperty("bootstrap.servers"))
    }
}
