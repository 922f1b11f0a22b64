//! Local accounts (`identity_providers[].type: local`): users of the directory who sign in with
//! a password at `/.portcullis/login`, with no other software. Passwords are Argon2id hashes
//! ([`crate::password`], [`credentials`]); accounts can be seeded from `directory.users_file`
//! ([`seed`]).

pub mod credentials;
pub mod login;
pub mod seed;
