"""A local OAuth 2.1 authorization server to try authentication with (compose profile `auth`): it signs
short-lived JWTs for its clients with the client-credentials grant. Stands in for your identity provider;
not for production."""
