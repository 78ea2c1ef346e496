// Command lowkey-companion runs on a paired computer: it pairs with a box
// once, then keeps an authenticated link to it and serves device actions.
package main
