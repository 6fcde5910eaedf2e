//! Procedural macros of the DlinkWM guest SDK. Plugin authors use them through the `dlinkwm`
//! crate (`#[dlinkwm::entry]`), never by depending on this crate.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, ReturnType, Type};

/// Turns a function into a plugin entry the host can call by name.
///
/// The function takes zero or one argument of a type that implements `serde::Deserialize`, and
/// returns a `serde::Serialize` value or a `Result<T, E>` whose error implements `Display`. The
/// host chooses the format (postcard or JSON); the entry answers in the same one.
///
/// `#[dlinkwm::entry(name = "other")]` exports the entry under another name.
#[proc_macro_attribute]
pub fn entry(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2: TokenStream2 = item.clone().into();
    match expand(attr.into(), item2.clone()) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            // The user's item is emitted unchanged beside the error, so one mistake does not
            // cause a cascade of "function not found" errors.
            let error = error.into_compile_error();
            quote!(#error #item2).into()
        }
    }
}

fn parse_name(attr: TokenStream2) -> syn::Result<Option<LitStr>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let mut name = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("unknown argument; `#[dlinkwm::entry]` accepts only `name = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(name)
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        _ => false,
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let name = parse_name(attr)?;
    let function: ItemFn = syn::parse2(item)
        .map_err(|error| syn::Error::new(error.span(), "`#[dlinkwm::entry]` goes on a function"))?;
    let signature = &function.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(asyncness) = &signature.asyncness {
        errors.push(syn::Error::new_spanned(
            asyncness,
            "an entry cannot be `async`",
        ));
    }
    if let Some(unsafety) = &signature.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "an entry cannot be `unsafe`",
        ));
    }
    if let Some(abi) = &signature.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "an entry is a plain Rust function; `#[dlinkwm::entry]` generates the `extern \"C\"` export",
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &signature.generics,
            "an entry cannot be generic: the host calls it with one concrete input type",
        ));
    }
    if let Some(variadic) = &signature.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "an entry cannot be variadic",
        ));
    }
    let mut inputs = signature.inputs.iter();
    let argument = inputs.next();
    if let Some(FnArg::Receiver(receiver)) = argument {
        errors.push(syn::Error::new_spanned(
            receiver,
            "an entry is a free function; it cannot take `self`",
        ));
    }
    for extra in inputs {
        errors.push(syn::Error::new_spanned(
            extra,
            "an entry takes at most one argument; put several values in one struct or tuple",
        ));
    }
    let export_name = name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| signature.ident.to_string());
    if dlinkwm_abi::export::is_reserved(&export_name) {
        let span = name
            .as_ref()
            .map(|name| name.span())
            .unwrap_or_else(|| signature.ident.span());
        errors.push(syn::Error::new(
            span,
            format!("`{export_name}` is reserved by the DlinkWM ABI; choose another entry name"),
        ));
    }
    if let Some(first) = errors.pop() {
        let combined = errors.into_iter().fold(first, |mut all, error| {
            all.combine(error);
            all
        });
        return Err(combined);
    }

    let ident = &signature.ident;
    let shim = format_ident!("__dlinkwm_entry_{}", ident);
    let call = match argument {
        Some(FnArg::Typed(pattern)) => {
            let ty = &pattern.ty;
            quote_spanned! {ty.span()=>
                #ident(::dlinkwm::__private::decode::<#ty>(__input, __format)?)
            }
        }
        _ => quote!(#ident()),
    };
    let output = match &signature.output {
        ReturnType::Type(_, ty) if is_result(ty) => {
            quote_spanned!(ty.span()=> ::dlinkwm::__private::encode_result(#call, __format))
        }
        ReturnType::Type(_, ty) => {
            quote_spanned!(ty.span()=> ::dlinkwm::__private::encode(&#call, __format))
        }
        ReturnType::Default => quote!(::dlinkwm::__private::encode(&#call, __format)),
    };
    let export = LitStr::new(&export_name, Span::call_site());
    Ok(quote! {
        #function

        #[doc(hidden)]
        #[unsafe(export_name = #export)]
        pub extern "C" fn #shim(__ptr: i32, __len: i32, __format: i32) -> i32 {
            // SAFETY: the host passes a buffer it obtained from `dlinkwm_alloc` with this length
            // (or 0, 0 for no input), as the ABI requires; `run_entry` takes ownership of it.
            unsafe {
                ::dlinkwm::__private::run_entry(__ptr, __len, __format, |__input, __format| {
                    #output
                })
            }
        }
    })
}
