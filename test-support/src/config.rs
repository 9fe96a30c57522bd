//! The checks of a service's configuration against the rules `platform::config` gives every service.
use std::collections::HashMap;

use platform::config::{ConfigError, Source};

/// The production rule as a service declares it (`ServiceDefaults::required_in_production`): with
/// `APP_ENV=production`, leaving out any one of `required` (each given with a production value) stops startup
/// naming it, and with all of them the configuration is accepted.
pub fn assert_production_requires<C>(parse: fn(&dyn Source) -> Result<C, ConfigError>, required: &[(&str, &str)]) {
    let production = |left_out: Option<&str>| -> HashMap<&str, &str> {
        let set = required.iter().copied().filter(|(name, _)| Some(*name) != left_out);
        set.chain([("APP_ENV", "production")]).collect()
    };
    for (name, _) in required {
        match parse(&production(Some(name))) {
            Ok(_) => panic!("APP_ENV=production is accepted without {name}"),
            Err(error) => assert_eq!(error.variable, *name, "{error}"),
        }
    }
    if let Err(error) = parse(&production(None)) {
        panic!("a complete production configuration is refused: {error}");
    }
}

#[cfg(test)]
mod tests {
    use platform::config::{Common, ServiceDefaults};

    use super::*;

    /// A service that declares the database and the JWKS as required in production.
    fn parse(source: &dyn Source) -> Result<Common, ConfigError> {
        let service = ServiceDefaults { name: "s", port: 1, required_in_production: &["MONGODB_URI", "JWKS_URL"] };
        Common::from_source(source, &service)
    }

    const REQUIRED: [(&str, &str); 2] = [("MONGODB_URI", "mongodb://db:27017"), ("JWKS_URL", "http://u/jwks.json")];

    #[test]
    fn a_service_that_requires_what_it_declares_passes() {
        assert_production_requires(parse, &REQUIRED);
    }

    #[test]
    #[should_panic(expected = "accepted without TOKEN_SECRET")]
    fn a_variable_production_does_not_require_fails_the_check() {
        assert_production_requires(parse, &[REQUIRED[0], REQUIRED[1], ("TOKEN_SECRET", "s3cret")]);
    }
}
