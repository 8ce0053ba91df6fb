#![no_std]
// This file exists so that the user-space crate can name this one as a
// build-dependency (see aya-build); the programs live in `main.rs`.
