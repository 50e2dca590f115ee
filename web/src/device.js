// mediasoup-client, loaded apart from the rest of the page (build.mjs splits it
// out): it is most of the page's script, and evaluating it while the socket
// connects and joins keeps it off the path to the first frame.
export { Device } from 'mediasoup-client';
